"""Nothing said is lost: numbered bot messages, replay after a disconnect, repeated message ids answered once, the
typing indicator the dispatcher sends (issue 14). Real server, python-socketio clients."""
import json
import os
import queue
import signal
import time

import requests

from conftest import mirror_config, start
from sio_helpers import Client, drain

UNLIMITED = """
rate_limit:
  messages_per_second: 0
"""


def events(client, wait=0.8):
    return drain(client, wait)


def texts(got):
    return [args[0].get("text") for name, args in got if name == "bot_uttered"]


def seqs(got):
    return [args[0]["parley"]["seq"] for name, args in got if name == "bot_uttered"]


def numbered_client(url, session, resume_from=None):
    c = Client(url)
    parley = {} if resume_from is None else {"resume_from": resume_from}
    assert c.request_session(payload={"session_id": session, "parley": parley}) == session
    return c


def history(url, session):
    return requests.get(f"{url}/conversations/{session}/messages", timeout=5).json()["messages"]


def test_stock_clients_get_rasa_bytes_and_clients_that_ask_get_numbers(server_factory):
    server = server_factory(mirror_config(extra_socketio=UNLIMITED))
    plain = Client(server.url)
    session = plain.request_session()
    numbered = numbered_client(server.url, session)
    try:
        plain.say("hello", session_id=session)
        plain.say("/buttons", session_id=session)
        # The stock client's payloads are exactly Rasa's: no extra key.
        assert [args[0] for _, args in events(plain)] == [
            {"text": "hello"},
            {"text": "pick one", "quick_replies": [{"content_type": "text", "title": "Yes", "payload": "/yes"},
                                                  {"content_type": "text", "title": "No", "payload": "/no"}]},
        ]
        got = [args[0] for _, args in events(numbered)]
        assert got[0] == {"text": "hello", "parley": {"seq": 1}}
        assert got[1]["text"] == "pick one" and got[1]["parley"] == {"seq": 2}
        # Both sockets are the conversation's connections.
        connections = requests.get(f"{server.url}/conversations/{session}/connections", timeout=5).json()
        assert connections["connected"] == 2
        # The number is stored with the bot event.
        tracker = requests.get(f"{server.url}/conversations/{session}/tracker", timeout=5).json()
        assert [e["parley_seq"] for e in tracker["events"] if e["event"] == "bot"] == [1, 2]
    finally:
        plain.close()
        numbered.close()


def test_a_client_that_drops_mid_turn_gets_every_missed_message_once_in_order(server_factory):
    server = server_factory(mirror_config(extra_socketio=UNLIMITED, extra="api:\n  token: secret\n"))
    c = numbered_client(server.url, "tunnel")
    c.say("before", session_id="tunnel")
    assert seqs(events(c)) == [1]
    # The phone enters a tunnel while a slow agent answers; more is said while it is away.
    c.say("/slow", session_id="tunnel")
    time.sleep(0.2)
    c.close()
    time.sleep(1.2)
    r = requests.post(f"{server.url}/conversations/tunnel/messages", headers={"Authorization": "Bearer secret"},
                      json=[{"text": "a reminder"}, {"text": "another"}], timeout=5)
    assert r.status_code == 202, r.text
    # Back: it resumes from the last number it has and gets the rest, then live messages, each once.
    back = numbered_client(server.url, "tunnel", resume_from=1)
    try:
        got = events(back)
        assert [(args[0]["parley"]["seq"], args[0]["text"]) for _, args in got] == [(2, "slow done"), (3, "a reminder"), (4, "another")]
        back.say("live", session_id="tunnel")
        assert [(args[0]["parley"]["seq"], args[0]["text"]) for _, args in events(back)] == [(5, "live")]
        # Resuming from 0 replays everything; from the latest, nothing.
        again = numbered_client(server.url, "tunnel", resume_from=5)
        assert events(again, 0.5) == []
        again.close()
        full = numbered_client(server.url, "tunnel", resume_from=0)
        assert seqs(events(full)) == [1, 2, 3, 4, 5]
        full.close()
    finally:
        back.close()


def test_replay_while_the_conversation_is_busy_has_no_gap_and_no_duplicate(server_factory):
    """A client resumes while another tab keeps the bot talking: replayed and live messages meet without a gap or a
    repeat (the live ones that overtake the replay are held until it is done)."""
    server = server_factory(mirror_config(extra_socketio=UNLIMITED))
    talker = Client(server.url)
    session = talker.request_session()
    try:
        for i in range(30):
            talker.say(f"m{i}", session_id=session)
        time.sleep(0.05)
        late = numbered_client(server.url, session, resume_from=0)
        for i in range(30, 60):
            talker.say(f"m{i}", session_id=session)
        got = events(late, 2.0)
        assert [(args[0]["parley"]["seq"], args[0]["text"]) for _, args in got] == [(i + 1, f"m{i}") for i in range(60)]
        late.close()
    finally:
        talker.close()


def test_replay_is_bounded_and_the_gap_shows_in_the_numbers(server_factory):
    server = server_factory(mirror_config(extra_socketio=UNLIMITED, extra="dispatcher:\n  replay_limit: 3\n"))
    c = Client(server.url)
    session = c.request_session()
    for i in range(6):
        c.say(f"m{i}", session_id=session)
    events(c)
    c.close()
    back = numbered_client(server.url, session, resume_from=1)
    try:
        assert seqs(events(back)) == [4, 5, 6]
    finally:
        back.close()


def test_the_reply_of_a_turn_committed_before_a_kill_is_replayed_after_the_restart(tmp_path):
    config = mirror_config(extra_socketio=UNLIMITED)
    server = start(config, workdir=str(tmp_path))
    try:
        c = numbered_client(server.url, "crash")
        c.say("/slow", session_id="crash")
        time.sleep(0.2)
        c.close()   # nobody is connected when the reply is committed and sent
        time.sleep(1.3)
        assert [m.get("text") for m in history(server.url, "crash")] == ["/slow", "slow done"]
    finally:
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
    server = start(config, workdir=str(tmp_path))
    try:
        back = numbered_client(server.url, "crash", resume_from=0)
        assert [(args[0]["parley"]["seq"], args[0]["text"]) for _, args in events(back)] == [(1, "slow done")]
        back.close()
    finally:
        server.stop()


def test_a_repeated_message_id_is_one_turn_and_gets_the_first_answer_again(server_factory):
    server = server_factory(mirror_config(extra_socketio=UNLIMITED))
    c = Client(server.url)
    session = c.request_session()
    try:
        c.say("order a pizza", session_id=session, message_id="m-1")
        assert texts(events(c)) == ["order a pizza"]
        c.say("order a pizza", session_id=session, message_id="m-1")   # the client retries after a reconnect
        assert texts(events(c)) == ["order a pizza"]
        assert [m.get("text") for m in history(server.url, session)] == ["order a pizza", "order a pizza"]   # one user, one bot
        # A numbering client that already has the answer gets nothing again.
        n = numbered_client(server.url, session, resume_from=1)
        n.say("order a pizza", session_id=session, message_id="m-1")
        assert events(n, 0.5) == []
        n.close()
        # A bad message_id is refused with a reason.
        c.say("x", session_id=session, message_id=["not", "a", "string"])
        assert "message_id" in c.next_error()["message"]
        # REST honours the same key.
        body = {"sender": "rest-user", "message": "hi", "message_id": "r-1"}
        first = requests.post(f"{server.url}/webhooks/rest/webhook", json=body, timeout=5).json()
        second = requests.post(f"{server.url}/webhooks/rest/webhook", json=body, timeout=5).json()
        assert first == second == [{"recipient_id": "rest-user", "text": "hi"}]
        assert len(history(server.url, "rest-user")) == 2
        metrics = requests.get(f"{server.url}/metrics", timeout=5).text
        assert "parley_repeated_messages_total 3" in metrics, [l for l in metrics.splitlines() if "repeated" in l]
    finally:
        c.close()


def test_typing_shows_for_a_slow_turn_and_not_for_a_fast_one(server_factory):
    typing = """
typing:
  on: {event: typing_on, payload: {"typing": true}}
  off: {event: typing_off, payload: null}
"""
    server = server_factory(mirror_config(extra_socketio=UNLIMITED + typing, extra="dispatcher:\n  typing_delay: 0.3\n  typing_repeat: 0.4\n"))
    c = Client(server.url)
    for name in ("typing_on", "typing_off"):
        c.sio.on(name, (lambda n: lambda *args: c.events.put((n, list(args))))(name), namespace="/")
    session = c.request_session()
    try:
        c.say("fast", session_id=session)
        assert events(c) == [("bot_uttered", [{"text": "fast"}])]
        c.say("/slow", session_id=session)
        got = events(c, 1.6)
        names = [name for name, _ in got]
        # on after 0.3 s, again every 0.4 s while the 1 s agent runs, off just before the reply.
        assert names[0] == "typing_on" and names[-2:] == ["typing_off", "bot_uttered"], names
        assert 2 <= names.count("typing_on") <= 3 and names.count("typing_off") == 1, names
        assert got[0][1] == [{"typing": True}] and got[-2][1] == []
    finally:
        c.close()


def test_parley_options_are_checked(server_factory):
    server = server_factory(mirror_config(extra_socketio=UNLIMITED))
    c = Client(server.url)
    try:
        c.emit("session_request", {"session_id": "s", "parley": {"resume_from": -1}})
        assert "resume_from" in c.next_error()["message"]
        c.emit("session_request", {"session_id": "s", "parley": "yes"})
        assert "parley must be an object" in c.next_error()["message"]
        c.emit("session_request", {"session_id": "\u0001numbered\u0001s"})
        assert "control characters" in c.next_error()["message"]
    finally:
        c.close()
    no_persistence = server_factory(mirror_config(persistence=False))
    c = Client(no_persistence.url)
    try:
        c.emit("session_request", {"session_id": "s", "parley": {}})
        assert "session_persistence" in c.next_error()["message"]
    finally:
        c.close()
