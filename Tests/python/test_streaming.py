"""Streamed replies through the ABI (1.2 `parley_stream`): the Rust example agent answers word by word; Socket.IO
clients see Rasa Pro's stream_start / stream_chunk / stream_end, then the final bot_uttered; numbering clients get
(seq, chunk) and a client that reconnects mid-stream gets the chunks it missed, then the rest."""
import os
import queue
import time

import requests

from conftest import PLUGINS
from sio_helpers import Client

RUST = os.path.join(PLUGINS, "librustcalc.so")
ANSWER = "Let me work that out. 2 * (3 + 4) comes to 14, step by step from the inside out."


def config():
    return f"""channels:
  socketio:
    session_persistence: true
    rate_limit:
      messages_per_second: 0
agents:
  - name: rustcalc
    plugin: {RUST}
store:
  type: sqlite
  path: parley.db
"""


def listen(c):
    for name in ("stream_start", "stream_chunk", "stream_end"):
        c.sio.on(name, (lambda n: lambda *args: c.events.put((n, list(args))))(name), namespace="/")
    return c


def collect(c, until="bot_uttered", wait=10):
    out = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            name, args = c.next(timeout=0.2)
        except queue.Empty:
            continue
        out.append((name, args[0] if args else None))
        if name == until:
            return out
    return out


def test_a_stock_client_sees_rasa_pro_stream_events_then_the_final_message(server_factory):
    server = server_factory(config())
    c = listen(Client(server.url))
    session = c.request_session()
    try:
        c.say("explain 2 * (3 + 4)", session_id=session)
        got = collect(c)
        names = [n for n, _ in got]
        assert names[0] == "stream_start" and names[-2:] == ["stream_end", "bot_uttered"], names
        assert got[0][1] == {} and got[-2][1] == {}
        chunks = [p for n, p in got if n == "stream_chunk"]
        assert len(chunks) == len(ANSWER.split(" ")) and all(set(p) == {"text"} for p in chunks)
        assert "".join(p["text"] for p in chunks) == ANSWER
        assert got[-1][1] == {"text": ANSWER}
        # The store keeps the final message only.
        messages = requests.get(f"{server.url}/conversations/{session}/messages", timeout=5).json()["messages"]
        assert [m.get("text") for m in messages] == ["explain 2 * (3 + 4)", ANSWER]
        # A plain calculation does not stream.
        c.say("1 + 1", session_id=session)
        assert [n for n, _ in collect(c)] == ["bot_uttered"]
    finally:
        c.close()


def test_a_client_that_drops_mid_stream_gets_the_chunks_it_missed_then_the_rest(server_factory):
    server = server_factory(config())
    c = listen(Client(server.url))
    assert c.request_session(payload={"session_id": "reader", "parley": {}}) == "reader"
    c.say("explain 2 * (3 + 4)", session_id="reader")
    seen = []
    while len(seen) < 4:
        name, args = c.next(timeout=5)
        if name == "stream_chunk":
            seen.append(args[0])
    c.close()   # the cable is pulled after four words
    assert [p["parley"] for p in seen] == [{"seq": 1, "chunk": i} for i in range(4)]
    time.sleep(0.3)
    back = listen(Client(server.url))
    try:
        assert back.request_session(payload={"session_id": "reader", "parley": {"resume_from": 0, "chunks": 4}}) == "reader"
        got = collect(back)
        chunks = [p for n, p in got if n == "stream_chunk"]
        indexes = [p["parley"]["chunk"] for p in chunks]
        assert indexes == list(range(4, len(ANSWER.split(" ")))), indexes   # no gap, no repeat
        assert "".join(p["text"] for p in seen + chunks) == ANSWER
        assert got[-2][0] == "stream_end" and got[-1] == ("bot_uttered", {"text": ANSWER, "parley": {"seq": 1}})
    finally:
        back.close()
