"""Black-box tests of the Socket.IO layer with the real python-socketio client from PyPI.

They start `parley-protocol-server` (from $PARLEY_BIN, default .build/debug) on a free 127.0.0.1 port and
talk to its `/socket.io/` endpoint: the official suite's handlers on `/` and `/custom`, plus the test-only
namespace `/parley-test` (Sources/ProtocolServer/SocketIOSuite.swift).
"""

import queue
import socket
import time

import pytest
import socketio

from sio_helpers import running_protocol_server


@pytest.fixture(scope="session")
def protocol_server():
    """Starts `parley-protocol-server` (from $PARLEY_BIN, default .build/debug) and yields its base URL."""
    with running_protocol_server() as port:
        yield f"http://127.0.0.1:{port}"


# MARK: helpers

TRANSPORTS = {
    "polling": ["polling"],
    "websocket": ["websocket"],
    "upgrade": None,  # the client's default: polling, then upgrade to WebSocket
}

TIMEOUT = 5


class Client:
    """A python-socketio client that records the events it receives, per (namespace, event)."""

    def __init__(self, url, mode, namespaces=("/",), auth=None):
        self.sio = socketio.Client(reconnection=False)
        self.queues = {}
        self.mode = mode
        self.url = url
        self.namespaces = list(namespaces)
        self.auth = auth
        for ns in self.namespaces:
            for event in ("auth", "message-back", "echo-back", "room-message", "answer", "answer-error"):
                self._record(ns, event)

    def _queue(self, ns, event):
        return self.queues.setdefault((ns, event), queue.Queue())

    def _record(self, ns, event):
        q = self._queue(ns, event)
        self.sio.on(event, lambda *args: q.put(args), namespace=ns)

    def connect(self):
        self.sio.connect(
            self.url,
            transports=TRANSPORTS[self.mode],
            namespaces=self.namespaces,
            auth=self.auth,
            wait_timeout=TIMEOUT,
        )
        return self

    def next(self, event, ns="/"):
        """The arguments of the next `event` on `ns` (a tuple), waiting up to TIMEOUT seconds."""
        return self._queue(ns, event).get(timeout=TIMEOUT)

    def nothing(self, event, ns="/", wait=0.3):
        """True if no `event` arrives on `ns` within `wait` seconds."""
        try:
            self._queue(ns, event).get(timeout=wait)
            return False
        except queue.Empty:
            return True

    def close(self):
        self.sio.disconnect()


@pytest.fixture(params=list(TRANSPORTS))
def mode(request):
    return request.param


@pytest.fixture
def clients(protocol_server, mode):
    made = []

    def make(namespaces=("/",), auth=None):
        c = Client(protocol_server, mode, namespaces, auth).connect()
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


# MARK: tests


def test_transport_mode(clients, mode):
    c = clients()
    assert c.next("auth") == ({},)
    if mode == "upgrade":
        deadline = time.monotonic() + TIMEOUT
        while c.sio.transport() != "websocket" and time.monotonic() < deadline:
            time.sleep(0.05)
    expected = {"polling": "polling", "websocket": "websocket", "upgrade": "websocket"}[mode]
    assert c.sio.transport() == expected
    # The session keeps working after the upgrade (and across several heartbeats of 300 ms).
    time.sleep(1.0)
    c.sio.emit("message", "still here")
    assert c.next("message-back") == ("still here",)


def test_auth_payload_is_seen_by_the_server(clients):
    c = clients(auth={"token": "123"})
    assert c.next("auth") == ({"token": "123"},)


def test_events_round_trip(clients):
    c = clients()
    c.sio.emit("message", (1, "2", {"3": [True]}, None, 1.5, "héllo 👋"))
    assert c.next("message-back") == (1, "2", {"3": [True]}, None, 1.5, "héllo 👋")


def test_events_keep_their_order(clients):
    c = clients()
    assert c.next("auth") == ({},)
    # 12 replies: below python-engineio's 16-packets-per-polling-response limit (see the next test).
    for i in range(12):
        c.sio.emit("message", i)
    assert [c.next("message-back")[0] for _ in range(12)] == list(range(12))


# python-engineio's client rejects a polling response holding more than 16 packets
# (Payload.max_decode_packets); the server caps each response at EngineIOConfiguration.maxPacketsPerPoll (16).
def test_burst_of_events_over_polling(protocol_server):
    c = Client(protocol_server, "polling").connect()
    try:
        for i in range(50):
            c.sio.emit("message", i)
        assert [c.next("message-back")[0] for _ in range(50)] == list(range(50))
    finally:
        c.close()


def test_burst_of_events_over_websocket(protocol_server):
    c = Client(protocol_server, "websocket").connect()
    try:
        for i in range(200):
            c.sio.emit("message", i)
        assert [c.next("message-back")[0] for _ in range(200)] == list(range(200))
    finally:
        c.close()


def test_client_to_server_ack(clients):
    c = clients()
    assert c.sio.call("message-with-ack", (1, "2", {"3": [False]}), timeout=TIMEOUT) == (1, "2", {"3": [False]})
    assert c.sio.call("message-with-ack", "one", timeout=TIMEOUT) == "one"


def test_server_to_client_ack(clients):
    c = clients(namespaces=("/parley-test",))
    c.sio.on("question", lambda *args: ("answer to", *args), namespace="/parley-test")
    c.sio.emit("ask", ("life", 42), namespace="/parley-test")
    assert c.next("answer", "/parley-test") == ("answer to", "life", 42)


def test_binary_event_and_binary_ack(clients):
    c = clients()
    blob = bytes(range(256)) * 4
    c.sio.emit("message", (b"\x01\x02\x03", {"nested": blob, "n": 1}, "text"))
    assert c.next("message-back") == (b"\x01\x02\x03", {"nested": blob, "n": 1}, "text")
    assert c.sio.call("message-with-ack", (b"\x04\x05", "x"), timeout=TIMEOUT) == (b"\x04\x05", "x")


def test_binary_server_to_client_ack(clients):
    c = clients(namespaces=("/parley-test",))
    c.sio.on("question", lambda *args: b"\xff\x00", namespace="/parley-test")
    c.sio.emit("ask", b"\x10", namespace="/parley-test")
    assert c.next("answer", "/parley-test") == (b"\xff\x00",)


def test_namespaces_share_one_session(clients):
    c = clients(namespaces=("/", "/custom"), auth={"k": "v"})
    assert c.next("auth", "/") == ({"k": "v"},)
    assert c.next("auth", "/custom") == ({"k": "v"},)
    c.sio.emit("message", "main", namespace="/")
    c.sio.emit("message", "custom", namespace="/custom")
    assert c.next("message-back", "/") == ("main",)
    assert c.next("message-back", "/custom") == ("custom",)
    assert c.sio.get_sid("/") != c.sio.get_sid("/custom")


def test_unknown_namespace_is_refused(protocol_server, mode):
    c = Client(protocol_server, mode, namespaces=("/random",))
    errors = queue.Queue()
    c.sio.on("connect_error", lambda data: errors.put(data), namespace="/random")
    with pytest.raises(socketio.exceptions.ConnectionError):
        c.connect()
    assert errors.get(timeout=TIMEOUT) == {"message": "Invalid namespace"}
    c.close()


def test_middleware_refusal_carries_message_and_data(protocol_server, mode):
    c = Client(protocol_server, mode, namespaces=("/parley-test",), auth={"refuse": True})
    errors = queue.Queue()
    c.sio.on("connect_error", lambda data: errors.put(data), namespace="/parley-test")
    with pytest.raises(socketio.exceptions.ConnectionError):
        c.connect()
    err = errors.get(timeout=TIMEOUT)
    assert err["message"] == "refused by test"
    assert err["data"] == {"reason": "asked"}
    c.close()


def test_rooms(clients):
    ns = "/parley-test"
    a = clients(namespaces=(ns,))
    b = clients(namespaces=(ns,))
    outsider = clients(namespaces=(ns,))
    assert "lobby" in a.sio.call("join", "lobby", namespace=ns, timeout=TIMEOUT)
    rooms_b = b.sio.call("join", "lobby", namespace=ns, timeout=TIMEOUT)
    assert set(rooms_b) == {b.sio.get_sid(ns), "lobby"}

    a.sio.call("to-room", ("lobby", "hi", 1), namespace=ns, timeout=TIMEOUT)
    assert a.next("room-message", ns) == ("hi", 1)
    assert b.next("room-message", ns) == ("hi", 1)
    assert outsider.nothing("room-message", ns)

    a.sio.call("to-others", ("lobby", "not you"), namespace=ns, timeout=TIMEOUT)
    assert b.next("room-message", ns) == ("not you",)
    assert a.nothing("room-message", ns)

    # A socket id is a room holding that socket.
    a.sio.call("to-room", (outsider.sio.get_sid(ns), "direct"), namespace=ns, timeout=TIMEOUT)
    assert outsider.next("room-message", ns) == ("direct",)

    b.sio.call("leave", "lobby", namespace=ns, timeout=TIMEOUT)
    a.sio.call("to-room", ("lobby", "after leave"), namespace=ns, timeout=TIMEOUT)
    assert a.next("room-message", ns) == ("after leave",)
    assert b.nothing("room-message", ns)


def test_server_side_disconnect(clients):
    ns = "/parley-test"
    c = clients(namespaces=(ns,))
    gone = queue.Queue()
    c.sio.on("disconnect", lambda *args: gone.put(args), namespace=ns)
    c.sio.emit("disconnect-me", namespace=ns)
    gone.get(timeout=TIMEOUT)
