"""Strictness of the Socket.IO layer over real sockets, seen by raw clients that answer pings.

The official suite cannot see these (its raw WebSocket never answers pings, so the ping timeout closes
every session anyway): an invalid packet, or no CONNECT within connectTimeout (1 s on the conformance
server), must close the session even though the client keeps the heartbeat alive.
"""

import json
import time

import pytest
import requests
import websocket

from test_socketio_client import protocol_server  # noqa: F401  (session fixture)

DEADLINE = 4.0  # seconds: generous; a session that is not closed stays open forever while pings are answered


class RawWebSocket:
    """A raw Engine.IO WebSocket client that answers pings and records everything else."""

    def __init__(self, url):
        ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self.ws = websocket.create_connection(ws_url, timeout=DEADLINE)
        self.ws.settimeout(0.1)
        self.received = []
        self.closed = False
        opening = self._recv_blocking()
        assert opening.startswith("0{")
        self.engine_sid = json.loads(opening[1:])["sid"]

    def _recv_blocking(self):
        self.ws.settimeout(DEADLINE)
        try:
            return self.ws.recv()
        finally:
            self.ws.settimeout(0.1)

    def pump(self, seconds):
        """Answers pings for `seconds` (or until closed); returns whether the session was closed."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.closed:
            try:
                msg = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
                self.closed = True
                break
            if msg == "2":
                self.ws.send("3")
            elif msg in ("", "1"):  # close frame, or the Engine.IO close packet before it
                self.closed = True
            else:
                self.received.append(msg)
        return self.closed

    def wait_for(self, count):
        """Answers pings until `count` non-ping messages were received."""
        end = time.monotonic() + DEADLINE
        while len(self.received) < count and time.monotonic() < end and not self.closed:
            self.pump(0.1)
        return self.received[:count]

    def send(self, data):
        if isinstance(data, bytes):
            self.ws.send_binary(data)
        else:
            self.ws.send(data)

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


@pytest.fixture
def raw(protocol_server):  # noqa: F811
    made = []

    def make():
        c = RawWebSocket(protocol_server)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def connected(raw):
    c = raw()
    c.send("40")
    reply, auth = c.wait_for(2)
    assert reply.startswith('40{"sid":')
    assert auth == '42["auth",{}]'
    c.received.clear()
    return c


@pytest.mark.parametrize(
    "packet",
    [
        "4abc",  # unknown Socket.IO packet type
        "42{}",  # payload is not an array
        '42abc["message",1]',  # garbage where the ack id belongs
        "42[]",  # empty event
        '42["disconnect"]',  # reserved event name
        '44{"message":"x"}',  # CONNECT_ERROR from a client
        '41{"x":1}',  # DISCONNECT with a payload
        '43["no id"]',  # ACK without an id
        '451["x",{"_placeholder":true,"num":0}]',  # attachment count without its dash
    ],
)
def test_invalid_packet_closes_the_session_while_pings_are_answered(raw, packet):
    c = connected(raw)
    c.send(packet)
    assert c.pump(DEADLINE), f"session still open after {packet!r}"


def test_bad_placeholder_closes_the_session(raw):
    c = connected(raw)
    c.send('451-["message",{"_placeholder":true,"num":3}]')
    c.send(b"\x01")
    assert c.pump(DEADLINE)


def test_unannounced_attachment_closes_the_session(raw):
    c = connected(raw)
    c.send(b"\x01\x02")
    assert c.pump(DEADLINE)


def test_text_while_attachments_are_expected_closes_the_session(raw):
    c = connected(raw)
    c.send('452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
    c.send(b"\x01")
    c.send('42["message","too early"]')
    assert c.pump(DEADLINE)


def test_valid_traffic_keeps_the_session_open(raw):
    c = connected(raw)
    c.send('42["message","hi"]')
    assert c.wait_for(1) == ['42["message-back","hi"]']
    # Longer than connectTimeout (1 s) and several heartbeats (300 + 200 ms): still open.
    assert not c.pump(1.5)
    c.send('42["message","still"]')
    assert c.wait_for(2)[1] == '42["message-back","still"]'


def test_no_connect_within_connect_timeout_closes_the_session(raw):
    c = raw()
    # Pings are answered, so only the Socket.IO connect timeout can close it.
    assert c.pump(DEADLINE)
    assert c.received == []


def test_refused_namespace_does_not_stop_the_connect_timeout(raw):
    c = raw()
    c.send("40/nope,")
    assert c.wait_for(1) == ['44/nope,{"message":"Invalid namespace"}']
    assert c.pump(DEADLINE)


def test_other_sessions_are_unaffected(raw):
    good = connected(raw)
    bad = connected(raw)
    bad.send("42{}")
    assert bad.pump(DEADLINE)
    good.send('42["message","ok"]')
    assert good.wait_for(1) == ['42["message-back","ok"]']


def test_invalid_packet_over_polling_closes_the_session(protocol_server):  # noqa: F811
    base = protocol_server + "/socket.io/?EIO=4&transport=polling"
    opening = requests.get(base, timeout=DEADLINE).text
    sid = json.loads(opening[1:])["sid"]
    url = base + "&sid=" + sid
    assert requests.post(url, data="40", timeout=DEADLINE).text == "ok"
    body = requests.get(url, timeout=DEADLINE).text
    assert body.startswith('40{"sid":')
    requests.post(url, data="42{}", timeout=DEADLINE)
    # The session is gone: the next poll ends with the close packet or is refused with 400.
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        r = requests.get(url, timeout=DEADLINE)
        if r.status_code == 400 or "1" in r.text.split("\x1e"):
            return
        if "2" in r.text.split("\x1e"):
            requests.post(url, data="3", timeout=DEADLINE)
    pytest.fail("polling session still open after an invalid packet")
