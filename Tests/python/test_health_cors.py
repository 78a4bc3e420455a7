"""GET /health (store state for load balancers) and CORS on the HTTP routes from channels.socketio.cors_origins."""
import os
import subprocess
import tempfile
import time

import pytest
import requests

from conftest import MIRROR, mirror_config


def cors_config(origins):
    return f"""
channels:
  socketio:
    cors_origins: {origins}
  rest:
agents:
  - name: mirror
    plugin: {MIRROR}
store:
  type: sqlite
  path: parley.db
api:
  token: secret
"""


def test_health_reports_the_store(server_factory):
    server = server_factory(mirror_config())
    r = requests.get(server.url + "/health", timeout=5)
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "store": "ok", "plugins": "ok"}


def test_preflight_and_requests_from_an_allowed_origin(server_factory):
    server = server_factory(cors_config('["https://shop.example"]'))
    pre = requests.options(
        server.url + "/webhooks/rest/webhook",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"},
        timeout=5)
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "POST" in pre.headers["Access-Control-Allow-Methods"]
    assert pre.headers["Access-Control-Allow-Headers"] == "content-type"
    r = requests.post(server.url + "/webhooks/rest/webhook", json={"sender": "cors-a", "message": "hi"},
                      headers={"Origin": "https://shop.example"}, timeout=10)
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    # The conversation API answers cross-origin too (history for a widget after a reload).
    pre = requests.options(
        server.url + "/conversations/cors-a/messages",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization"},
        timeout=5)
    assert pre.status_code == 204
    h = requests.get(server.url + "/conversations/cors-a/messages",
                     headers={"Origin": "https://shop.example", "Authorization": "Bearer secret"}, timeout=5)
    assert h.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    # Errors carry the headers too, so the page can read them.
    missing = requests.get(server.url + "/conversations/cors-a/messages", headers={"Origin": "https://shop.example"}, timeout=5)
    assert missing.status_code in (401, 403)
    assert missing.headers["Access-Control-Allow-Origin"] == "https://shop.example"


def test_a_refused_origin_gets_403_and_nothing_happens(server_factory):
    server = server_factory(cors_config('["https://shop.example"]'))
    pre = requests.options(
        server.url + "/webhooks/rest/webhook",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, timeout=5)
    assert pre.status_code == 403
    assert "Access-Control-Allow-Origin" not in pre.headers
    r = requests.post(server.url + "/webhooks/rest/webhook", json={"sender": "cors-b", "message": "hi"},
                      headers={"Origin": "https://evil.example"}, timeout=10)
    assert r.status_code == 403
    assert "cors_origins" in r.json()["message"]
    # The refused POST did not run a turn.
    h = requests.get(server.url + "/conversations/cors-b/messages", headers={"Authorization": "Bearer secret"}, timeout=5)
    assert h.status_code == 404
    # Requests without Origin (curl, servers) are not affected.
    assert requests.post(server.url + "/webhooks/rest/webhook", json={"sender": "cors-c", "message": "hi"}, timeout=10).status_code == 200


def test_no_cors_headers_without_cors_origins(server_factory):
    server = server_factory(mirror_config())
    r = requests.post(server.url + "/webhooks/rest/webhook", json={"sender": "cors-d", "message": "hi"},
                      headers={"Origin": "https://any.example"}, timeout=10)
    assert r.status_code == 200
    assert "Access-Control-Allow-Origin" not in r.headers


def test_health_is_503_while_the_disk_is_full_and_recovers(server_factory, small_disk):
    config = mirror_config().replace("path: parley.db", f"path: {small_disk}/parley.db")
    server = server_factory(config)
    assert requests.post(server.url + "/webhooks/rest/webhook", json={"sender": "disk", "message": "before"}, timeout=10).status_code == 200
    assert requests.get(server.url + "/health", timeout=5).status_code == 200
    filler = os.path.join(small_disk, "filler")
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True)  # until ENOSPC
    # Turns now fail to commit (the reply is a refusal or the fallback); /health says why.
    for i in range(5):
        requests.post(server.url + "/webhooks/rest/webhook", json={"sender": "disk", "message": "x" * 4000 + str(i)}, timeout=10)
    r = requests.get(server.url + "/health", timeout=5)
    assert r.status_code == 503, r.text
    assert r.json()["status"] == "unavailable"
    assert "disk full" in r.json()["store"]
    os.remove(filler)
    deadline = time.monotonic() + 10
    while True:
        requests.post(server.url + "/webhooks/rest/webhook", json={"sender": "disk", "message": "after"}, timeout=10)
        if requests.get(server.url + "/health", timeout=5).status_code == 200:
            break
        assert time.monotonic() < deadline, "the store did not recover after space was freed"
        time.sleep(0.2)
