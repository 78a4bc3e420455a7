"""Proactive messages: a plugin's emit() reaches every socket of the session room, after the turn's reply."""
import os
import subprocess
import tempfile

import pytest

from conftest import MIRROR, ROOT, mirror_config
from sio_helpers import Client

PLUGIN_C = r"""
#include <string.h>
#include "parley.h"

static const parley_host_api *API;
static parley_host *HOST;

static parley_status handle(void *state, parley_call *call, parley_str req) {
    (void)state;
    /* The request is {"sender_id":"...",...}: find the id (test fixture; ids without escapes). */
    const char *key = "\"sender_id\":\"";
    const char *p = NULL;
    for (size_t i = 0; i + strlen(key) <= req.len; i++) {
        if (memcmp(req.ptr + i, key, strlen(key)) == 0) { p = req.ptr + i + strlen(key); break; }
    }
    const char *reply = "{\"responses\":[{\"text\":\"scheduled\"}]}";
    parley_status s = API->complete(call, PARLEY_OK, (parley_str){reply, strlen(reply)});
    if (p) {
        const char *end = memchr(p, '"', (size_t)(req.ptr + req.len - p));
        if (end) {
            const char *msg = "{\"responses\":[{\"text\":\"reminder\"}]}";
            API->emit(HOST, (parley_str){p, (size_t)(end - p)}, (parley_str){msg, strlen(msg)});
        }
    }
    return s == PARLEY_OK ? PARLEY_PENDING : s;
}

static parley_plugin_def DEF = {
    sizeof(parley_plugin_def), PARLEY_ABI_MAJOR, PARLEY_ABI_MINOR, PARLEY_KIND_AGENT,
    "reminder", "1.0.0", PARLEY_FLAG_THREAD_SAFE, 0, NULL, handle, NULL, NULL};

PARLEY_EXPORT const parley_plugin_def *parley_plugin_init_v1(const parley_host_api *api, parley_host *host, parley_str config) {
    (void)config;
    API = api;
    HOST = host;
    return &DEF;
}
"""


@pytest.fixture(scope="module")
def reminder_plugin():
    d = tempfile.mkdtemp(prefix="parley-reminder-")
    src = os.path.join(d, "reminder.c")
    out = os.path.join(d, "libreminder.so")
    with open(src, "w") as f:
        f.write(PLUGIN_C)
    subprocess.run(["cc", "-std=c99", "-shared", "-fPIC", "-I", os.path.join(ROOT, "include"), "-o", out, src], check=True)
    return out


def test_emit_reaches_every_socket_of_the_session(server_factory, reminder_plugin):
    cfg = mirror_config().replace(MIRROR, reminder_plugin)
    server = server_factory(cfg)
    a, b = Client(server.url), Client(server.url)
    try:
        a.request_session("proactive-1")
        b.request_session("proactive-1")
        a.say("remind me", "proactive-1")
        assert a.replies(2) == [{"text": "scheduled"}, {"text": "reminder"}]
        assert b.replies(2) == [{"text": "scheduled"}, {"text": "reminder"}]
    finally:
        a.close()
        b.close()
