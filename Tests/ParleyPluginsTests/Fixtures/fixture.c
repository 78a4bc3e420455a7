/*
** A deliberately configurable (and often broken) plugin for ParleyPluginsTests. Compile-time macros pick the
** breakage: FIX_NO_ENTRY, FIX_V2_SYMBOL, FIX_MAJOR=n, FIX_MINOR=n, FIX_INIT_NULL, FIX_SMALL, FIX_NULL_NAME,
** FIX_NULL_HANDLE, FIX_KIND=n, FIX_THREAD_SAFE, FIX_FORMATTER, FIX_NAME="...".
** As an agent it misbehaves on demand, by the user text: see fixture_handle.
** fixture_stat(i) exposes what happened inside (statuses that complete/emit returned, concurrency).
*/
#define _POSIX_C_SOURCE 200809L
#include "parley.h"
#include "pjson.h"

#include <pthread.h>
#include <time.h>

#ifndef FIX_NAME
#define FIX_NAME "fixture"
#endif
#ifndef FIX_MAJOR
#define FIX_MAJOR PARLEY_ABI_MAJOR
#endif
#ifndef FIX_MINOR
#define FIX_MINOR PARLEY_ABI_MINOR
#endif
#ifdef FIX_FORMATTER
#define FIX_KIND_VALUE PARLEY_KIND_FORMATTER
#elif defined(FIX_KIND)
#define FIX_KIND_VALUE FIX_KIND
#else
#define FIX_KIND_VALUE PARLEY_KIND_AGENT
#endif

enum { ST_DOUBLE, ST_LATE, ST_EMIT, ST_CONCURRENT, ST_MAX_CONCURRENT, ST_CANCELS, ST_EMIT_BAD, ST_HANDLED, ST_STREAM_AFTER, ST_SHAPE, ST_COUNT };
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
static int g_stats[ST_COUNT] = {0, 1, 1, 0, 0, 0, 1, 0, 1, 1};
static const parley_host_api *g_api;
static parley_host *g_host;
static char g_suffix[64] = "!";

static int g_release;

/* Lets every "block" call return. */
PARLEY_EXPORT void fixture_release(void) { __atomic_store_n(&g_release, 1, __ATOMIC_SEQ_CST); }

PARLEY_EXPORT int fixture_stat(int i) {
    pthread_mutex_lock(&g_lock);
    int v = (i >= 0 && i < ST_COUNT) ? g_stats[i] : -999;
    pthread_mutex_unlock(&g_lock);
    return v;
}

static void set_stat(int i, int v) {
    pthread_mutex_lock(&g_lock);
    g_stats[i] = v;
    pthread_mutex_unlock(&g_lock);
}

static void nap_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* "late": complete only after the host called cancel (i.e. after the deadline), from another thread. */
typedef struct late_job { parley_call *call; } late_job;
static parley_call *g_cancelled_call;

static void *late_thread(void *arg) {
    late_job *job = (late_job *)arg;
    pthread_mutex_lock(&g_lock);
    while (g_cancelled_call != job->call) pthread_cond_wait(&g_cond, &g_lock);
    pthread_mutex_unlock(&g_lock);
    parley_status st = g_api->complete(job->call, PARLEY_OK, parley_str_from_cstr("{\"responses\":[{\"text\":\"too late\"}]}"));
    set_stat(ST_LATE, (int)st);
    free(job);
    return NULL;
}

static void fixture_cancel(void *state, parley_call *call) {
    (void)state;
    pthread_mutex_lock(&g_lock);
    g_cancelled_call = call;
    g_stats[ST_CANCELS]++;
    pthread_cond_broadcast(&g_cond);
    pthread_mutex_unlock(&g_lock);
}

static parley_status complete_cstr(parley_call *call, const char *json) {
    return g_api->complete(call, PARLEY_OK, parley_str_from_cstr(json));
}

#ifdef FIX_FORMATTER
/* Appends the configured suffix to every "text" response. */
static parley_status fixture_handle(void *state, parley_call *call, parley_str request) {
    (void)state;
    pj_span root = {request.ptr, request.len}, responses, element, key, value;
    if (!pj_get(root, "responses", &responses)) return PARLEY_E_BAD_JSON;
    pj_buf out = {NULL, 0, 0, 1};
    pj_puts(&out, "{\"responses\":[");
    const char *cursor = NULL;
    int first = 1;
    while (pj_array_next(responses, &cursor, &element)) {
        if (!first) pj_puts(&out, ",");
        first = 0;
        pj_puts(&out, "{");
        const char *c2 = NULL;
        int firstMember = 1;
        while (pj_object_next(element, &c2, &key, &value)) {
            if (!firstMember) pj_puts(&out, ",");
            firstMember = 0;
            pj_put_span(&out, key);
            pj_puts(&out, ":");
            if (key.n == 6 && memcmp(key.p, "\"text\"", 6) == 0 && pj_is_string(value)) {
                char *text = (char *)malloc(value.n + 1);
                long n = text ? pj_string(value, text, value.n + 1) : -1;
                pj_buf joined = {NULL, 0, 0, 1};
                if (n >= 0) pj_put(&joined, text, (size_t)n);
                pj_puts(&joined, g_suffix);
                pj_put_string(&out, joined.p ? joined.p : "", joined.n);
                free(joined.p);
                free(text);
            } else {
                pj_put_span(&out, value);
            }
        }
        pj_puts(&out, "}");
    }
    pj_puts(&out, "]}");
    parley_str reply = {out.p, out.n};
    g_api->complete(call, PARLEY_OK, reply);
    free(out.p);
    return PARLEY_OK;
}
#else
static parley_status fixture_handle(void *state, parley_call *call, parley_str request) {
    (void)state;
    pj_span root = {request.ptr, request.len}, message, tok, sender;
    char text[64] = "";
    if (pj_get(root, "message", &message) && pj_get(message, "text", &tok)) pj_string(tok, text, sizeof text);

    pthread_mutex_lock(&g_lock);
    g_stats[ST_HANDLED]++;
    int now = ++g_stats[ST_CONCURRENT];
    if (now > g_stats[ST_MAX_CONCURRENT]) g_stats[ST_MAX_CONCURRENT] = now;
    pthread_mutex_unlock(&g_lock);
    parley_status result = PARLEY_OK;

    if (strcmp(text, "block") == 0) {
        while (!__atomic_load_n(&g_release, __ATOMIC_SEQ_CST)) nap_ms(1);
        complete_cstr(call, "{\"responses\":[{\"text\":\"released\"}]}");
    } else if (strcmp(text, "nap") == 0) {
        nap_ms(20);
        complete_cstr(call, "{\"responses\":[{\"text\":\"rested\"}]}");
    } else if (strcmp(text, "invalid_json") == 0) {
        complete_cstr(call, "{\"responses\": [ {\"text\": ");
    } else if (strcmp(text, "wrong_shape") == 0) {
        complete_cstr(call, "{\"responses\": \"not a list\"}");
    } else if (strcmp(text, "not_objects") == 0) {
        complete_cstr(call, "{\"responses\": [1, 2]}");
    } else if (strcmp(text, "array_reply") == 0) {
        complete_cstr(call, "[1]");
    } else if (strcmp(text, "double") == 0) {
        complete_cstr(call, "{\"responses\":[{\"text\":\"first\"}]}");
        set_stat(ST_DOUBLE, (int)complete_cstr(call, "{\"responses\":[{\"text\":\"second\"}]}"));
    } else if (strcmp(text, "null_json") == 0) {
        parley_str bad = {NULL, 5};
        g_api->complete(call, PARLEY_OK, bad);
    } else if (strcmp(text, "ok_without_complete") == 0) {
        result = PARLEY_OK;
    } else if (strcmp(text, "fail") == 0) {
        result = PARLEY_E_INTERNAL;
    } else if (strcmp(text, "error_complete") == 0) {
        g_api->complete(call, PARLEY_E_INTERNAL, parley_str_from_cstr("{\"error\":{\"code\":\"boom\",\"message\":\"exploded\"}}"));
    } else if (strcmp(text, "pending_complete") == 0) {
        g_api->complete(call, PARLEY_PENDING, parley_str_from_cstr("{}"));
    } else if (strcmp(text, "late") == 0) {
        late_job *job = (late_job *)calloc(1, sizeof *job);
        pthread_t t;
        job->call = call;
        pthread_create(&t, NULL, late_thread, job);
        pthread_detach(t);
        result = PARLEY_PENDING;
    } else if (strcmp(text, "get_api") == 0) {
        int ok = g_api->get_api("parley_log") == (parley_fn)g_api->log &&
                 g_api->get_api("parley_complete") == (parley_fn)g_api->complete &&
                 g_api->get_api("parley_emit") == (parley_fn)g_api->emit && g_api->get_api("parley_get_api") != NULL &&
                 g_api->get_api("parley_no_such_function") == NULL && g_api->get_api(NULL) == NULL &&
                 PARLEY_API_HAS(g_api, get_api) && g_api->abi_major == PARLEY_ABI_MAJOR &&
                 g_api->host_version != NULL && strncmp(g_api->host_version, "parley ", 7) == 0;
        complete_cstr(call, ok ? "{\"responses\":[{\"text\":\"get_api ok\"}]}" : "{\"responses\":[{\"text\":\"get_api bad\"}]}");
    } else if (strcmp(text, "stream") == 0) {
        /* 1.2: two chunks, then bad ones; after complete() the call can no longer stream. */
        parley_stream_fn stream = (parley_stream_fn)g_api->get_api("parley_stream");
        parley_str bad = {NULL, 3};
        int ok = PARLEY_API_HAS(g_api, stream) && stream == g_api->stream &&
                 stream(call, parley_str_from_cstr("{\"text\":\"one\"}")) == PARLEY_OK &&
                 stream(call, parley_str_from_cstr("{\"text\":\" two\"}")) == PARLEY_OK &&
                 stream(call, parley_str_from_cstr("{\"words\":1}")) == PARLEY_E_BAD_JSON &&
                 stream(call, parley_str_from_cstr("not json")) == PARLEY_E_BAD_JSON && stream(call, bad) == PARLEY_E_INVALID &&
                 stream(NULL, parley_str_from_cstr("{\"text\":\"x\"}")) == PARLEY_E_INVALID;
        complete_cstr(call, ok ? "{\"responses\":[{\"text\":\"one two\"}]}" : "{\"responses\":[{\"text\":\"stream bad\"}]}");
        set_stat(ST_STREAM_AFTER, (int)stream(call, parley_str_from_cstr("{\"text\":\"late\"}")));
    } else if (strcmp(text, "bad_shape") == 0) {
        /* Valid JSON the host would drop: complete() must say so. */
        set_stat(ST_SHAPE, (int)g_api->complete(call, PARLEY_OK, parley_str_from_cstr("{\"responses\":[1]}")));
    } else if (strcmp(text, "emit_invalid") == 0) {
        parley_str empty = {NULL, 0}, bad = {NULL, 3};
        int ok = g_api->emit(g_host, empty, parley_str_from_cstr("{\"responses\":[]}")) == PARLEY_E_INVALID &&
                 g_api->emit(g_host, parley_str_from_cstr("x"), bad) == PARLEY_E_INVALID &&
                 g_api->emit(NULL, parley_str_from_cstr("x"), parley_str_from_cstr("{}")) == PARLEY_E_INVALID &&
                 g_api->complete(NULL, PARLEY_OK, empty) == PARLEY_E_INVALID;
        complete_cstr(call, ok ? "{\"responses\":[{\"text\":\"refused\"}]}" : "{\"responses\":[{\"text\":\"accepted garbage\"}]}");
    } else if (strcmp(text, "emit") == 0) {
        pj_get(root, "sender_id", &sender);
        parley_str sid = {sender.p + 1, sender.n - 2};
        set_stat(ST_EMIT, (int)g_api->emit(g_host, sid, parley_str_from_cstr("{\"responses\":[{\"text\":\"pushed\"}]}")));
        set_stat(ST_EMIT_BAD, (int)g_api->emit(g_host, sid, parley_str_from_cstr("{\"responses\": 3}")));
        complete_cstr(call, "{\"responses\":[{\"text\":\"emitted\"}]}");
    } else {
        complete_cstr(call, "{\"events\":[{\"event\":\"slot\",\"name\":\"seen\",\"value\":true}],\"responses\":[{\"text\":\"ok\"}]}");
    }

    pthread_mutex_lock(&g_lock);
    g_stats[ST_CONCURRENT]--;
    pthread_mutex_unlock(&g_lock);
    return result;
}
#endif

static parley_plugin_def g_def;

#ifndef FIX_NO_ENTRY
#ifdef FIX_V2_SYMBOL
#define FIX_ENTRY parley_plugin_init_v2
PARLEY_EXPORT const parley_plugin_def *parley_plugin_init_v2(const parley_host_api *, parley_host *, parley_str);
#else
#define FIX_ENTRY parley_plugin_init_v1
#endif
PARLEY_EXPORT const parley_plugin_def *FIX_ENTRY(const parley_host_api *api, parley_host *host, parley_str config_json) {
    g_api = api;
    g_host = host;
    pj_span cfg = {config_json.ptr, config_json.len}, suffix;
    if (pj_get(cfg, "suffix", &suffix)) pj_string(suffix, g_suffix, sizeof g_suffix);
    api->log(host, PARLEY_LOG_INFO, parley_str_from_cstr("fixture init"));
#ifdef FIX_INIT_NULL
    api->log(host, PARLEY_LOG_ERROR, parley_str_from_cstr("fixture refuses to load: missing api_key in config"));
    return NULL;
#endif
    g_def.struct_size = sizeof(parley_plugin_def);
    g_def.abi_major = FIX_MAJOR;
    g_def.abi_minor = FIX_MINOR;
    g_def.kind = FIX_KIND_VALUE;
    g_def.name = FIX_NAME;
    g_def.version = "0.0.1";
#ifdef FIX_THREAD_SAFE
    g_def.flags = PARLEY_FLAG_THREAD_SAFE;
#endif
    g_def.handle = fixture_handle;
    g_def.cancel = fixture_cancel;
#ifdef FIX_SMALL
    g_def.struct_size = 8;
#endif
#ifdef FIX_NULL_NAME
    g_def.name = NULL;
#endif
#ifdef FIX_NULL_HANDLE
    g_def.handle = NULL;
#endif
    return &g_def;
}
#else
PARLEY_EXPORT int parley_plugin_init_v1_typo(void) { return (int)(sizeof(g_def) + (size_t)fixture_handle + (size_t)fixture_cancel); }
#endif
