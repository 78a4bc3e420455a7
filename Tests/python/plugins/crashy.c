/*
** crashy -- a deliberately faulty third-party agent, written only from include/parley.h, for the isolation tests.
** "crash:segv" dereferences NULL, "crash:abort" aborts, "crash:exit" calls exit(3), "crash:hang" never returns,
** "crash:leak" keeps 64 MB per call; "crash:spin" burns CPU forever; "crash:twice" completes twice; "crash:late"
** completes from a thread 1.5 s later (past a 1 s deadline); "crash:flood" emits 5000 proactive messages at once;
** "crash:cancelhang" never completes and its cancel hook never returns; "crash:pid" answers after 0.5 s with its
** process id; anything else is echoed as {"text": "crashy: T"}. Before a fault it writes a line to stderr, which
** the server must show in its crash report; what the host's functions returned is written there too.
** "crash:events" answers whether its request's tracker carried events ("crashy: events none" or "crashy: events some").
** Config {"thread_safe": false} clears PARLEY_FLAG_THREAD_SAFE; {"tracker_events": false} sets
** PARLEY_FLAG_NO_TRACKER_EVENTS. Built with -DCRASH_IN_INIT, its entry point
** dereferences NULL (for `parley plugins check --isolated`).
*/
#define _POSIX_C_SOURCE 200809L
#include "parley.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const parley_host_api *g_api;
static parley_host *g_host;
static parley_plugin_def g_def;
static volatile int g_cancel_hangs;

static const char *status_name(parley_status s) {
    switch (s) {
    case PARLEY_OK: return "PARLEY_OK";
    case PARLEY_E_EXPIRED: return "PARLEY_E_EXPIRED";
    case PARLEY_E_ALREADY_COMPLETED: return "PARLEY_E_ALREADY_COMPLETED";
    case PARLEY_E_BUSY: return "PARLEY_E_BUSY";
    case PARLEY_E_CLOSED: return "PARLEY_E_CLOSED";
    default: return "other";
    }
}

static void say(const char *line, parley_status s) {
    fprintf(stderr, "crashy: %s %s\n", line, status_name(s));
    fflush(stderr);
}

static void *complete_late(void *arg) {
    parley_call *call = arg;
    struct timespec wait = {1, 500000000};
    nanosleep(&wait, NULL);
    say("late complete returned", g_api->complete(call, PARLEY_OK, parley_str_from_cstr("{\"responses\":[{\"text\":\"too late\"}]}")));
    return NULL;
}

/* The text of {"message":{"text":"..."}} (a plain scan: the test sends simple ASCII). */
static void message_text(parley_str request, char *out, size_t size) {
    const char *key = "\"text\":\"";
    out[0] = 0;
    size_t n = request.len;
    const char *p = request.ptr;
    for (size_t i = 0; i + strlen(key) < n; i++) {
        if (memcmp(p + i, key, strlen(key)) == 0) {
            size_t j = i + strlen(key), k = 0;
            while (j < n && p[j] != '"' && k + 1 < size) out[k++] = p[j++];
            out[k] = 0;
            return;
        }
    }
}

static parley_status handle(void *state, parley_call *call, parley_str request) {
    (void)state;
    char text[256], reply[512];
    message_text(request, text, sizeof text);
    /* The command may follow a routing prefix ("iso crash:segv"). */
    const char *command = strstr(text, "crash:");
    if (command && command != text) memmove(text, command, strlen(command) + 1);
    if (strncmp(text, "crash:", 6) == 0) {
        fprintf(stderr, "crashy: about to %s\n", text + 6);
        fflush(stderr);
    }
    if (strcmp(text, "crash:segv") == 0) {
        volatile int *nowhere = NULL;
        *nowhere = 42;
    } else if (strcmp(text, "crash:abort") == 0) {
        abort();
    } else if (strcmp(text, "crash:exit") == 0) {
        exit(3);
    } else if (strcmp(text, "crash:hang") == 0) {
        for (;;) pause();
    } else if (strcmp(text, "crash:leak") == 0) {
        char *block = malloc(64 << 20);
        if (block) memset(block, 1, 64 << 20);
    } else if (strcmp(text, "crash:spin") == 0) {
        volatile unsigned long spins = 0;
        for (;;) spins++;
    } else if (strcmp(text, "crash:twice") == 0) {
        g_api->complete(call, PARLEY_OK, parley_str_from_cstr("{\"responses\":[{\"text\":\"crashy: first\"}]}"));
        say("second complete returned", g_api->complete(call, PARLEY_OK, parley_str_from_cstr("{\"responses\":[{\"text\":\"crashy: second\"}]}")));
        return PARLEY_OK;
    } else if (strcmp(text, "crash:late") == 0) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, complete_late, call) != 0) return PARLEY_E_INTERNAL;
        pthread_detach(thread);
        return PARLEY_PENDING;
    } else if (strcmp(text, "crash:flood") == 0) {
        int busy = 0, ok = 0;
        for (int i = 0; i < 5000; i++) {
            parley_status s = g_api->emit(g_host, parley_str_from_cstr("flood-target"), parley_str_from_cstr("{\"responses\":[{\"text\":\"flood\"}]}"));
            if (s == PARLEY_OK) ok++;
            else if (s == PARLEY_E_BUSY) busy++;
        }
        fprintf(stderr, "crashy: flood queued %d, refused busy %d\n", ok, busy);
        fflush(stderr);
    } else if (strcmp(text, "crash:cancelhang") == 0) {
        g_cancel_hangs = 1;
        return PARLEY_PENDING;
    } else if (strcmp(text, "crash:events") == 0) {
        int none = 0;
        const char *empty = "\"events\":[]";
        for (size_t i = 0; i + strlen(empty) <= request.len; i++) {
            if (memcmp(request.ptr + i, empty, strlen(empty)) == 0) none = 1;
        }
        snprintf(reply, sizeof reply, "{\"responses\":[{\"text\":\"crashy: events %s\"}]}", none ? "none" : "some");
        g_api->complete(call, PARLEY_OK, parley_str_from_cstr(reply));
        return PARLEY_OK;
    } else if (strcmp(text, "crash:pid") == 0) {
        struct timespec wait = {0, 500000000};
        nanosleep(&wait, NULL);
        snprintf(reply, sizeof reply, "{\"responses\":[{\"text\":\"crashy: pid %ld\"}]}", (long)getpid());
        g_api->complete(call, PARLEY_OK, parley_str_from_cstr(reply));
        return PARLEY_OK;
    }
    snprintf(reply, sizeof reply, "{\"responses\":[{\"text\":\"crashy: %s\"}]}", text);
    g_api->complete(call, PARLEY_OK, parley_str_from_cstr(reply));
    return PARLEY_OK;
}

static void cancel(void *state, parley_call *call) {
    (void)state;
    if (g_cancel_hangs) {
        fprintf(stderr, "crashy: cancel hook hangs\n");
        fflush(stderr);
        for (;;) pause();
    }
    (void)call;
}

PARLEY_EXPORT const parley_plugin_def *parley_plugin_init_v1(const parley_host_api *api, parley_host *host, parley_str config_json) {
#ifdef CRASH_IN_INIT
    fprintf(stderr, "crashy: crashing in init\n");
    fflush(stderr);
    volatile int *nowhere = NULL;
    *nowhere = 42;
#endif
    g_api = api;
    g_host = host;
    g_def.struct_size = sizeof g_def;
    g_def.abi_major = PARLEY_ABI_MAJOR;
    g_def.abi_minor = 0;
    g_def.kind = PARLEY_KIND_AGENT;
    g_def.name = "crashy";
    g_def.version = "0.0.1";
    g_def.flags = PARLEY_FLAG_THREAD_SAFE;
    if (config_json.ptr && config_json.len >= 19) {
        for (size_t i = 0; i + 19 <= config_json.len; i++) {
            if (memcmp(config_json.ptr + i, "\"thread_safe\":false", 19) == 0) g_def.flags &= ~(uint32_t)PARLEY_FLAG_THREAD_SAFE;
        }
        for (size_t i = 0; i + 22 <= config_json.len; i++) {
            if (memcmp(config_json.ptr + i, "\"tracker_events\":false", 22) == 0) g_def.flags |= PARLEY_FLAG_NO_TRACKER_EVENTS;
        }
    }
    g_def.handle = handle;
    g_def.cancel = cancel;
    return &g_def;
}
