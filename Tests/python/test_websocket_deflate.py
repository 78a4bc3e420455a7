"""Black-box tests of WebSocket permessage-deflate (RFC 7692) with independent Python clients.

They start `parley-protocol-server --per-message-deflate` (from $PARLEY_BIN, default .build/debug):
- the python-socketio AsyncClient, whose WebSocket is aiohttp's, asks for compression through
  `websocket_extra_options={"compress": 15}` and talks to `/socket.io/` (the suite's handlers), WebSocket-only
  and polling-then-upgrade (aiohttp sends the upgrade on its polling keep-alive connection), and once more
  polling-then-upgrade without offering compression;
- wsproto (installed with simple-websocket) offers permessage-deflate on a raw Engine.IO connection to the
  `/engine.io/` echo server.
Both libraries compress what they send and decompress what they receive, so a round trip proves both
directions interoperate. The sync python-socketio client (websocket-client) cannot offer the extension.
"""

import asyncio
import re
import socket
import time

import pytest
import requests

from sio_helpers import running_protocol_server

TIMEOUT = 5


@pytest.fixture(scope="module")
def deflate_server():
    """`parley-protocol-server --per-message-deflate` on a free port; yields (host, port)."""
    with running_protocol_server("--per-message-deflate") as port:
        yield ("127.0.0.1", port)


BIG_TEXT = "".join(f"message part {i}; " for i in range(2000))  # ~36 KB, compresses well
BIG_BINARY = bytes(i % 251 for i in range(50_000))


def _async_client_round_trips(host, port, transports, compress):
    """python-socketio AsyncClient (aiohttp) session over `transports`, WebSocket compression window `compress`
    (0: not offered); with polling first, aiohttp sends the upgrade on the keep-alive connection that carried
    the polling requests."""
    pytest.importorskip("aiohttp", reason="the python-socketio AsyncClient needs aiohttp (Tests/python/requirements.txt)")
    import socketio

    async def scenario():
        options = {"compress": compress} if compress else {}
        sio = socketio.AsyncClient(reconnection=False, websocket_extra_options=options)
        backs = asyncio.Queue()
        sio.on("message-back", lambda *args: backs.put_nowait(args))
        await sio.connect(f"http://{host}:{port}", transports=transports, wait_timeout=TIMEOUT)
        try:
            deadline = time.monotonic() + TIMEOUT
            while sio.transport() != "websocket" and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert sio.transport() == "websocket"
            # aiohttp reports the negotiated window bits (0: compression was not negotiated).
            assert sio.eio.ws.compress == compress
            # Large text and binary both ways (aiohttp compresses every message it sends when negotiated).
            await sio.emit("message", BIG_TEXT)
            assert await asyncio.wait_for(backs.get(), TIMEOUT) == (BIG_TEXT,)
            await sio.emit("message", BIG_BINARY)
            assert await asyncio.wait_for(backs.get(), TIMEOUT) == (BIG_BINARY,)
            # Small messages (below the server's threshold) and acks; context takeover across messages.
            for i in range(20):
                answer = await sio.call("message-with-ack", (i, BIG_TEXT[:100 * i]), timeout=TIMEOUT)
                assert tuple(answer) == (i, BIG_TEXT[:100 * i])
            # Across several 300 ms heartbeats.
            await asyncio.sleep(1.0)
            await sio.emit("message", BIG_TEXT)
            assert await asyncio.wait_for(backs.get(), TIMEOUT) == (BIG_TEXT,)
        finally:
            await sio.disconnect()

    asyncio.run(scenario())


@pytest.mark.parametrize("transports", [["websocket"], ["polling", "websocket"]], ids=["websocket", "upgrade"])
def test_python_socketio_async_client_with_compression(deflate_server, transports):
    host, port = deflate_server
    _async_client_round_trips(host, port, transports, compress=15)


def test_python_socketio_async_client_upgrade_without_compression(deflate_server):
    """Polling, then the upgrade on the reused keep-alive connection, compression not offered."""
    host, port = deflate_server
    _async_client_round_trips(host, port, ["polling", "websocket"], compress=0)


def test_wsproto_raw_engineio_with_compression(deflate_server):
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Message, Ping, Request, TextMessage
    from wsproto.extensions import PerMessageDeflate

    host, port = deflate_server
    sock = socket.create_connection((host, port), timeout=TIMEOUT)
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(ws.send(Request(host=f"{host}:{port}", target="/engine.io/?EIO=4&transport=websocket",
                                 extensions=[PerMessageDeflate()])))
    pending = []  # complete messages (text or bytes)
    parts = []
    accepted = None

    def pump():
        nonlocal accepted
        data = sock.recv(65536)
        assert data, "server closed the connection"
        ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                accepted = event
            elif isinstance(event, Ping):
                sock.sendall(ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                raise AssertionError(f"server closed with {event.code}")
            elif isinstance(event, Message):
                parts.append(event.data)
                if event.message_finished:
                    pending.append("".join(parts) if isinstance(event, TextMessage) else b"".join(parts))
                    parts.clear()

    def next_message():
        while True:
            while pending:
                message = pending.pop(0)
                if message == "2":  # Engine.IO ping: answer it
                    sock.sendall(ws.send(TextMessage(data="3")))
                    continue
                return message
            pump()

    try:
        while accepted is None:
            pump()
        assert any(isinstance(e, PerMessageDeflate) for e in accepted.extensions), "permessage-deflate not negotiated"
        assert next_message().startswith('0{"sid":')
        for _ in range(3):
            sock.sendall(ws.send(TextMessage(data="4" + BIG_TEXT)))
            assert next_message() == "4" + BIG_TEXT
        sock.sendall(ws.send(BytesMessage(data=BIG_BINARY)))
        assert next_message() == BIG_BINARY
        sock.sendall(ws.send(TextMessage(data="4small")))
        assert next_message() == "4small"
    finally:
        sock.close()


def test_parley_serve_per_message_deflate_from_parley_yml(server_factory):
    """`channels.socketio.per_message_deflate` in parley.yml reaches `parley serve`: the AsyncClient negotiates
    compression (with the configured window) after upgrading from polling, and the mirror agent answers."""
    pytest.importorskip("aiohttp", reason="the python-socketio AsyncClient needs aiohttp (Tests/python/requirements.txt)")
    import socketio
    from conftest import mirror_config

    server = server_factory(mirror_config(
        persistence=False,
        extra_socketio="per_message_deflate: {threshold: 0, max_window_bits: 12, compression_level: 1}",
    ))
    text = BIG_TEXT[:5000]

    async def scenario():
        sio = socketio.AsyncClient(reconnection=False, websocket_extra_options={"compress": 15})
        replies = asyncio.Queue()
        sio.on("bot_uttered", lambda data: replies.put_nowait(data))
        await sio.connect(server.url, transports=["polling", "websocket"], wait_timeout=TIMEOUT)
        try:
            deadline = time.monotonic() + TIMEOUT
            while sio.transport() != "websocket" and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert sio.transport() == "websocket"
            # The server answered with its window (client_max_window_bits limited to max_window_bits).
            assert sio.eio.ws.compress == 12
            await sio.emit("user_uttered", {"message": text})
            assert await asyncio.wait_for(replies.get(), TIMEOUT) == {"text": text}
        finally:
            await sio.disconnect()

    asyncio.run(scenario())


def test_parley_serve_refuses_a_bad_per_message_deflate():
    from conftest import mirror_config, run_to_exit

    code, out = run_to_exit(mirror_config(extra_socketio="per_message_deflate: {max_window_bits: 20}"))
    assert code == 78, out
    assert re.search(r"parley\.yml:\d+:\d+: channels\.socketio\.per_message_deflate\.max_window_bits: expected a window size in bits between 9 and 15, got 20", out), out
