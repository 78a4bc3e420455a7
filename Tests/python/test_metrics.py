"""GET /metrics: Prometheus text format whose counts match a scripted conversation."""
import re
import time

import requests

from conftest import mirror_config
from sio_helpers import Client


def scrape(server, headers=None):
    r = requests.get(server.url + "/metrics", headers=headers or {}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in r.text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([-+0-9.eEInfNa]+)$', line)
        assert m, f"not Prometheus text format: {line!r}"
        samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return samples


def value(samples, name, **labels):
    want = {k: str(v) for k, v in labels.items()}
    total = 0.0
    found = False
    for key, v in samples.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if all(got.get(k) == val for k, val in want.items()):
            total += v
            found = True
    assert found, f"{name} {labels} not in {sorted(k for k in samples if k.startswith(name[:12]))}"
    return total


def test_counts_match_a_scripted_conversation(server_factory):
    server = server_factory(mirror_config(extra="dispatcher:\n  turn_deadline: 1\n"))
    before = scrape(server)
    c = Client(server.url, transports=["websocket"])
    try:
        sid = c.request_session("metrics")
        for i in range(5):
            c.say(f"hello {i}", session_id=sid)
            assert c.replies(1)
        c.say("x" * 70_000, session_id=sid)          # refused: too_large
        assert c.next_error()["code"] == "too_large"
        during = scrape(server)
        assert value(during, "parley_socketio_connected_sockets") >= 1
        assert value(during, "parley_engineio_sessions", transport="websocket") >= 1
    finally:
        c.close()
    for i in range(3):
        requests.post(server.url + "/webhooks/rest/webhook", json={"sender": "m-rest", "message": f"r{i}"}, timeout=10)
    time.sleep(0.5)
    after = scrape(server)
    delta = lambda name, **l: value(after, name, **l) - (value(before, name, **l) if any(k.startswith(name) for k in before) else 0)
    assert value(after, "parley_turns_total") == 8                        # 5 over Socket.IO + 3 over REST
    assert value(after, "parley_turn_duration_seconds_count") == 8
    assert value(after, "parley_plugin_calls_total", plugin="mirror") == 8
    assert value(after, "parley_plugin_call_duration_seconds_count", plugin="mirror") == 8
    assert value(after, "parley_user_messages_total", channel="socketio") == 6
    assert value(after, "parley_refusals_total", code="too_large") == 1
    assert value(after, "parley_store_commits_total") >= 1
    assert value(after, "parley_store_written_bytes_total") > 0
    assert value(after, "parley_engineio_messages_received_total") >= 7   # CONNECT, session_request, 6 messages
    assert value(after, "parley_socketio_connected_sockets") == 0
    assert value(after, "parley_engineio_sessions", transport="websocket") == 0
    # Hummingbird's HTTP metrics for the REST requests.
    assert any(k.startswith("hb_") or k.startswith("http_") for k in after), sorted(after)[:20]
    # Nothing names a conversation or a text.
    text = requests.get(server.url + "/metrics", timeout=10).text
    assert "metrics" not in text.replace("/metrics", "") or "m-rest" not in text
    assert "m-rest" not in text and "hello" not in text


def test_a_fallback_is_counted_by_cause(server_factory):
    server = server_factory(mirror_config(extra="dispatcher:\n  turn_deadline: 0.5\n"))
    # The mirror agent answers "/slow" after a while (Plugins/mirror-c); past the deadline the fallback goes out.
    r = requests.post(server.url + "/webhooks/rest/webhook", json={"sender": "slow", "message": "/slow"}, timeout=10)
    assert r.status_code == 200
    # The dispatcher sends the fallback at the turn's deadline; the plugin layer then expires the call it still
    # holds (LoadedPlugin.agentReleaseMargin later), which releases it and counts the expiry.
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(server)
        if value(samples, "parley_plugin_deadline_expiries_total", plugin="mirror") == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert value(samples, "parley_plugin_deadline_expiries_total", plugin="mirror") == 1
    assert value(samples, "parley_fallbacks_total", cause="deadline") == 1
    assert value(samples, "parley_fallbacks_total") == 1


def test_metrics_token_and_off(server_factory):
    server = server_factory(mirror_config(extra="metrics:\n  token: scrape-secret\n"))
    assert requests.get(server.url + "/metrics", timeout=10).status_code == 401
    scrape(server, {"Authorization": "Bearer scrape-secret"})
    off = server_factory(mirror_config(extra="metrics:\n  enabled: false\n"))
    assert requests.get(off.url + "/metrics", timeout=10).status_code == 404
