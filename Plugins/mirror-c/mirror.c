/*
** mirror -- the Parley conformance agent (C). For a user text T it replies with Rasa responses:
**   T not starting with '/'  {"text": T}
**   /buttons /quick /image /attachment /elements /custom /custom_data   fixed responses (see table below)
**   /metadata, /metadata_data   the message metadata inside "custom"
**   /sender                     {"text": <sender id>}
**   /many                       five responses "1".."5"
**   /slow                       completes from another thread after 1 s: {"text": "slow done"}
**   /block                      blocks inside handle() for 3 s, then {"text": "block done"} (a hung plugin)
**   any other /...              no response
** Thread-safe (PARLEY_FLAG_THREAD_SAFE): the only shared state is the list of pending /slow jobs.
*/
#define _POSIX_C_SOURCE 200809L
#include "parley.h"
#include "pjson.h"

#include <pthread.h>
#include <stdio.h>
#include <time.h>

/* One instance per entry call (the same library may be configured twice). */
typedef struct mirror {
    parley_plugin_def def;
    const parley_host_api *api;
    parley_host *host;
} mirror;

static void logf_(const mirror *m, parley_log_level level, const char *text) {
    m->api->log(m->host, level, parley_str_from_cstr(text));
}

/* ---- /slow: a job per call, completed by its own thread unless cancelled first ---- */

typedef struct slow_job {
    const mirror *m;
    parley_call *call;
    int cancelled;
    struct slow_job *next;
} slow_job;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_wake = PTHREAD_COND_INITIALIZER;
static slow_job *g_jobs;
static int g_running;

static void *slow_thread(void *arg) {
    slow_job *job = (slow_job *)arg;
    const mirror *m = job->m;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 1;
    pthread_mutex_lock(&g_lock);
    while (!job->cancelled) {
        if (pthread_cond_timedwait(&g_wake, &g_lock, &until) != 0) break; /* timed out: 1 s passed */
    }
    int cancelled = job->cancelled;
    for (slow_job **pp = &g_jobs; *pp; pp = &(*pp)->next) {
        if (*pp == job) { *pp = job->next; break; }
    }
    pthread_mutex_unlock(&g_lock);

    static const char reply[] = "{\"events\":[],\"responses\":[{\"text\":\"slow done\"}]}";
    parley_status st = cancelled ? m->api->complete(job->call, PARLEY_E_CANCELLED, parley_str_from_cstr(NULL))
                                 : m->api->complete(job->call, PARLEY_OK, parley_str_from_cstr(reply));
    char line[96];
    snprintf(line, sizeof line, "slow: complete returned %d%s", (int)st, cancelled ? " (after cancel)" : "");
    logf_(m, st == PARLEY_OK ? PARLEY_LOG_DEBUG : PARLEY_LOG_INFO, line);
    free(job);

    pthread_mutex_lock(&g_lock);
    g_running--;
    pthread_cond_broadcast(&g_wake);
    pthread_mutex_unlock(&g_lock);
    return NULL;
}

static parley_status start_slow(const mirror *m, parley_call *call) {
    slow_job *job = (slow_job *)calloc(1, sizeof *job);
    if (!job) return PARLEY_E_INTERNAL;
    job->m = m;
    job->call = call;
    pthread_mutex_lock(&g_lock);
    job->next = g_jobs;
    g_jobs = job;
    g_running++;
    pthread_mutex_unlock(&g_lock);
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&thread, &attr, slow_thread, job);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_mutex_lock(&g_lock);
        g_jobs = job->next;
        g_running--;
        pthread_mutex_unlock(&g_lock);
        free(job);
        return PARLEY_E_INTERNAL;
    }
    return PARLEY_PENDING;
}

static void mirror_cancel(void *state, parley_call *call) {
    (void)state;
    pthread_mutex_lock(&g_lock);
    for (slow_job *j = g_jobs; j; j = j->next) {
        if (j->call == call) j->cancelled = 1;
    }
    pthread_cond_broadcast(&g_wake);
    pthread_mutex_unlock(&g_lock);
}

static void mirror_shutdown(void *state) {
    mirror *m = (mirror *)state;
    pthread_mutex_lock(&g_lock);
    for (slow_job *j = g_jobs; j; j = j->next) {
        if (j->m == m) j->cancelled = 1;
    }
    pthread_cond_broadcast(&g_wake);
    for (;;) { /* wait until no job of this instance is left */
        int mine = 0;
        for (slow_job *j = g_jobs; j; j = j->next) mine += j->m == m;
        if (mine == 0) break;
        pthread_cond_wait(&g_wake, &g_lock);
    }
    pthread_mutex_unlock(&g_lock);
    free(m);
}

/* ---- the turn ---- */

typedef struct fixed_reply {
    const char *command;
    const char *responses; /* the JSON array elements */
} fixed_reply;

static const fixed_reply k_fixed[] = {
    {"/buttons", "{\"text\":\"pick one\",\"buttons\":[{\"title\":\"Yes\",\"payload\":\"/yes\"},{\"title\":\"No\",\"payload\":\"/no\"}]}"},
    {"/quick", "{\"text\":\"quick\",\"quick_replies\":[{\"title\":\"A\",\"payload\":\"/a\"}]}"},
    {"/image", "{\"image\":\"https://example.com/cat.png\"}"},
    {"/attachment", "{\"attachment\":{\"type\":\"video\",\"payload\":{\"src\":\"https://example.com/v.mp4\"}}}"},
    {"/elements", "{\"elements\":[{\"title\":\"Card\",\"subtitle\":\"sub\",\"buttons\":[{\"title\":\"Go\",\"payload\":\"/go\"}]}]}"},
    {"/custom", "{\"custom\":{\"foo\":\"bar\",\"n\":1}}"},
    {"/custom_data", "{\"custom\":{\"data\":{\"foo\":\"bar\",\"n\":1}}}"},
    {"/many", "{\"text\":\"1\"},{\"text\":\"2\"},{\"text\":\"3\"},{\"text\":\"4\"},{\"text\":\"5\"}"},
};

static parley_status mirror_handle(void *state, parley_call *call, parley_str request) {
    const mirror *m = (const mirror *)state;
    pj_span root = {request.ptr, request.len}, message, text_tok, sender, metadata;
    if (!pj_is_object(root) || !pj_get(root, "message", &message) || !pj_get(message, "text", &text_tok) ||
        !pj_is_string(text_tok)) {
        logf_(m, PARLEY_LOG_ERROR, "request has no message.text string");
        return PARLEY_E_BAD_JSON;
    }
    char *text = (char *)malloc(text_tok.n + 1);
    if (!text || pj_string(text_tok, text, text_tok.n + 1) < 0) {
        free(text);
        return PARLEY_E_BAD_JSON;
    }

    pj_buf out = {NULL, 0, 0, 1};
    pj_puts(&out, "{\"events\":[],\"responses\":[");
    if (text[0] != '/') {
        pj_puts(&out, "{\"text\":");
        pj_put_span(&out, text_tok); /* already a valid JSON string token */
        pj_puts(&out, "}");
    } else if (strcmp(text, "/slow") == 0) {
        free(text);
        free(out.p);
        return start_slow(m, call);
    } else if (strcmp(text, "/block") == 0) {
        struct timespec pause = {3, 0};
        while (nanosleep(&pause, &pause) != 0) {
        }
        pj_puts(&out, "{\"text\":\"block done\"}");
    } else if (strcmp(text, "/sender") == 0) {
        pj_puts(&out, "{\"text\":");
        if (pj_get(root, "sender_id", &sender) && pj_is_string(sender)) pj_put_span(&out, sender);
        else pj_puts(&out, "\"\"");
        pj_puts(&out, "}");
    } else if (strcmp(text, "/metadata") == 0 || strcmp(text, "/metadata_data") == 0) {
        int data = text[9] == '_';
        pj_puts(&out, data ? "{\"custom\":{\"data\":{\"metadata\":" : "{\"custom\":{\"metadata\":");
        if (pj_get(message, "metadata", &metadata)) pj_put_span(&out, metadata);
        else pj_puts(&out, "{}");
        pj_puts(&out, data ? "}}}" : "}}");
    } else {
        for (size_t i = 0; i < sizeof k_fixed / sizeof k_fixed[0]; i++) {
            if (strcmp(text, k_fixed[i].command) == 0) {
                pj_puts(&out, k_fixed[i].responses);
                break;
            }
        }
        /* any other "/..." leaves the response list empty */
    }
    pj_puts(&out, "]}");
    free(text);
    if (!out.ok) {
        free(out.p);
        return PARLEY_E_INTERNAL;
    }
    parley_str reply = {out.p, out.n};
    m->api->complete(call, PARLEY_OK, reply); /* a refusal is logged by the host */
    free(out.p);                              /* the host copied the reply */
    return PARLEY_OK;
}

PARLEY_EXPORT const parley_plugin_def *parley_plugin_init_v1(const parley_host_api *api, parley_host *host,
                                                             parley_str config_json) {
    (void)config_json;
    if (api == NULL || api->abi_major != PARLEY_ABI_MAJOR || !PARLEY_API_HAS(api, complete)) return NULL;
    mirror *m = (mirror *)calloc(1, sizeof *m);
    if (!m) return NULL;
    m->api = api;
    m->host = host;
    m->def.struct_size = sizeof(parley_plugin_def);
    m->def.abi_major = PARLEY_ABI_MAJOR;
    m->def.abi_minor = PARLEY_ABI_MINOR;
    m->def.kind = PARLEY_KIND_AGENT;
    m->def.name = "mirror";
    m->def.version = "1.0.0";
    /* Mirrors the message only: no tracker history needed in each request. */
    m->def.flags = PARLEY_FLAG_THREAD_SAFE | PARLEY_FLAG_NO_TRACKER_EVENTS;
    m->def.state = m;
    m->def.handle = mirror_handle;
    m->def.cancel = mirror_cancel;
    m->def.shutdown = mirror_shutdown;
    logf_(m, PARLEY_LOG_DEBUG, "mirror loaded");
    return &m->def;
}
