/*
** crashy -- a deliberately faulty third-party agent, written only from include/parley.h, for the isolation tests.
** "crash:segv" dereferences NULL, "crash:abort" aborts, "crash:exit" calls exit(3), "crash:hang" never returns,
** "crash:leak" keeps 64 MB per call; anything else is echoed as {"text": "crashy: T"}. Before a fault it writes a
** line to stderr, which the server must show in its crash report.
*/
#define _POSIX_C_SOURCE 200809L
#include "parley.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const parley_host_api *g_api;
static parley_plugin_def g_def;

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
    }
    snprintf(reply, sizeof reply, "{\"responses\":[{\"text\":\"crashy: %s\"}]}", text);
    g_api->complete(call, PARLEY_OK, parley_str_from_cstr(reply));
    return PARLEY_OK;
}

PARLEY_EXPORT const parley_plugin_def *parley_plugin_init_v1(const parley_host_api *api, parley_host *host, parley_str config_json) {
    (void)host;
    (void)config_json;
    g_api = api;
    g_def.struct_size = sizeof g_def;
    g_def.abi_major = PARLEY_ABI_MAJOR;
    g_def.abi_minor = 0;
    g_def.kind = PARLEY_KIND_AGENT;
    g_def.name = "crashy";
    g_def.version = "0.0.1";
    g_def.flags = PARLEY_FLAG_THREAD_SAFE;
    g_def.handle = handle;
    return &g_def;
}
