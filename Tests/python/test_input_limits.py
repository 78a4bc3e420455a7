"""Finding 1: no request can poison a conversation. Metadata depth/size limits at the edge, whatever is accepted
reads back after a restart, and a stored event that cannot be read is quarantined instead of breaking the
conversation."""
import json
import os
import signal
import sqlite3

import requests

from conftest import mirror_config, start
from sio_helpers import Client


def nested(depth):
    value = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


def rest(server, sender, message="hi", metadata=None):
    body = {"sender": sender, "message": message}
    if metadata is not None:
        body["metadata"] = metadata
    return requests.post(server.url + "/webhooks/rest/webhook", json=body, timeout=20)


def history(server, sender):
    return requests.get(f"{server.url}/conversations/{sender}/messages", timeout=20)


def test_the_511_deep_metadata_attack_is_refused_and_the_conversation_stays_usable(server_factory):
    server = server_factory(mirror_config())
    assert rest(server, "victim@example.com", "hello").status_code == 200
    # Before: accepted, stored 513 deep, and from then on the history was a 500 and the conversation unloadable.
    r = rest(server, "victim@example.com", "x", nested(511))
    assert r.status_code == 400, r.text
    assert "nested" in r.json()["message"]
    r = rest(server, "victim@example.com", "x", nested(33))
    assert r.status_code == 400 and "max_metadata_depth" in r.json()["message"]
    r = rest(server, "victim@example.com", "x", {"blob": "x" * 17_000})
    assert r.status_code == 413 and "max_metadata_bytes" in r.json()["message"]
    assert history(server, "victim@example.com").status_code == 200
    # The same attack over Socket.IO, metadata as a JSON string: refused, the session goes on.
    c = Client(server.url)
    try:
        sid = c.request_session("victim-sio")
        c.say("x", session_id=sid, metadata=json.dumps(nested(511)))
        c.say("still here", session_id=sid)
        assert c.replies(1)[0]["text"] == "still here"
    finally:
        c.close()
    assert history(server, "victim-sio").status_code == 200


def test_the_largest_and_deepest_accepted_input_reads_back_after_a_restart(server_factory):
    config = mirror_config()
    server = server_factory(config)
    deep = nested(32)                                  # the deepest accepted metadata
    big = {"blob": "é" * 8_000}                        # ~16 KB of JSON, under the 16 KiB limit
    text = "ü" * 32_000                                # 64,000 bytes of UTF-8, under the 64 KiB limit
    assert rest(server, "rest-user", text, deep).status_code == 200
    assert rest(server, "rest-user", "big", big).status_code == 200
    c = Client(server.url)
    try:
        sid = c.request_session("sio-user")
        c.say(text, session_id=sid, metadata=deep)
        c.replies(1)
        c.say("as string", session_id=sid, metadata=json.dumps(deep))
        c.replies(1)
    finally:
        c.close()
    workdir = server.workdir
    assert server.stop(signal.SIGTERM) == 0
    again = start(config, workdir=workdir)
    try:
        for sender in ("rest-user", "sio-user"):
            h = history(again, sender)
            assert h.status_code == 200, h.text
            t = requests.get(f"{again.url}/conversations/{sender}/tracker?include_events=ALL", timeout=20)
            assert t.status_code == 200, t.text
            users = [e for e in t.json()["events"] if e["event"] == "user"]
            assert users[0]["text"] == text
            assert users[0]["metadata"] == deep
        # A new message to each conversation after the restart (the conversation is loaded from the store).
        assert rest(again, "rest-user", "after restart").status_code == 200
        assert rest(again, "sio-user", "after restart").status_code == 200
    finally:
        again.stop()


def test_an_unreadable_stored_event_is_quarantined_not_fatal(server_factory):
    config = mirror_config()
    server = server_factory(config)
    assert rest(server, "poisoned", "first").status_code == 200
    workdir = server.workdir
    assert server.stop(signal.SIGTERM) == 0
    # An event written by an older version without limits: 600 levels deep, above what the store reads back.
    db = sqlite3.connect(os.path.join(workdir, "parley.db"))
    data = json.dumps({"event": "user", "timestamp": 2e9, "text": "poison", "metadata": nested(600)})
    db.execute("INSERT INTO events (sender_id, type, timestamp, data) VALUES (?, 'user', 2e9, ?)", ("poisoned", data))
    db.commit()
    db.close()
    again = start(config, workdir=workdir)
    try:
        h = history(again, "poisoned")
        assert h.status_code == 200, h.text
        r = rest(again, "poisoned", "second")
        assert r.status_code == 200 and r.json()[0]["text"] == "second"
        texts = [m.get("text") for m in history(again, "poisoned").json()["messages"]]
        assert "first" in texts and "second" in texts and "poison" not in texts
        logs = again.logs()
        assert "quarantined" in logs and "poisoned" in logs
        assert logs.count("an event cannot be read") == 1       # logged once, not per read
    finally:
        again.stop()
    db = sqlite3.connect(os.path.join(workdir, "parley.db"))
    rows = db.execute("SELECT sender_id, reason FROM quarantined_events").fetchall()
    kept = db.execute("SELECT count(*) FROM events WHERE data LIKE '%poison%'").fetchone()[0]
    db.close()
    assert rows and rows[0][0] == "poisoned" and "nesting" in rows[0][1]
    assert kept == 1                                            # the bytes stay for an operator
