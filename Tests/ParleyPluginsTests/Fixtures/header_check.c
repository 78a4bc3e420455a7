/* Compiled by HeaderTests as C99, C11 and C++17 with -Wall -Wextra -Werror -pedantic: the smallest complete
** plugin, touching every type and macro of parley.h. Valid C and C++ at once (no designated initializers). */
#include "parley.h"

#include <string.h>

static const parley_host_api *g_api;

static parley_status check_handle(void *state, parley_call *call, parley_str request) {
    (void)state;
    (void)request;
    parley_str reply = parley_str_from_cstr("{\"responses\":[{\"text\":\"hi\"}]}");
    return g_api->complete(call, PARLEY_OK, reply) == PARLEY_OK ? PARLEY_OK : PARLEY_E_INTERNAL;
}

static void check_cancel(void *state, parley_call *call) {
    (void)state;
    (void)call;
}

static void check_shutdown(void *state) { (void)state; }

static parley_plugin_def g_def;

PARLEY_EXPORT const parley_plugin_def *parley_plugin_init_v1(const parley_host_api *api, parley_host *host,
                                                             parley_str config_json) {
    (void)config_json;
    if (api->abi_major != PARLEY_ABI_MAJOR || !PARLEY_API_HAS(api, get_api)) return NULL;
    g_api = api;
    parley_emit_fn emit = (parley_emit_fn)api->get_api("parley_emit");
    if (emit != NULL) (void)emit;
    api->log(host, PARLEY_LOG_INFO, parley_str_from_cstr(PARLEY_ABI_VERSION));
    memset(&g_def, 0, sizeof g_def);
    g_def.struct_size = sizeof(parley_plugin_def);
    g_def.abi_major = PARLEY_ABI_MAJOR;
    g_def.abi_minor = PARLEY_ABI_MINOR;
    g_def.kind = PARLEY_KIND_AGENT;
    g_def.name = "header-check";
    g_def.version = PARLEY_ABI_VERSION;
    g_def.flags = PARLEY_FLAG_THREAD_SAFE | PARLEY_FLAG_CONCURRENT;
    g_def.handle = check_handle;
    g_def.cancel = check_cancel;
    g_def.shutdown = check_shutdown;
    return PARLEY_ABI_VERSION_NUMBER == 1000 + PARLEY_ABI_MINOR ? &g_def : NULL;
}

/* Every status and level is a distinct constant. */
typedef char status_values_distinct[(PARLEY_E_VERSION != PARLEY_E_BUSY && PARLEY_LOG_CRITICAL == 6) ? 1 : -1];
