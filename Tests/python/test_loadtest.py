"""`parley loadtest`, the generator behind `make bench`, against a real server and against a small WebSocket
server written here that fragments its replies, pings, and breaks the protocol on request. The generator's
HTTP upgrade and WebSocket framing are NIO's; these tests check that it still counts what it should."""
import base64
import hashlib
import json
import socket
import struct
import subprocess
import threading

from conftest import PARLEY, free_port, mirror_config

MEMORY_STORE = """store:
  type: memory
"""


def loadtest(*args, timeout=60):
    out = subprocess.run([PARLEY, "loadtest", *args], capture_output=True, text=True, timeout=timeout)
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout)


def no_rate_limit():
    return mirror_config(extra_socketio="rate_limit:\n  messages_per_second: 0", persistence=False).replace(
        "store:\n  type: sqlite\n  path: parley.db\n", MEMORY_STORE
    )


def test_round_trips_sessions_and_idle_sessions_against_parley(server_factory):
    server = server_factory(no_rate_limit())
    port = str(server.port)
    rtt = loadtest("rtt", "-c", "4", "-d", "1", "-w", "0.2", "-p", port)
    assert rtt["errors"] == 0 and rtt["established"] == 4 and rtt["completed"] > 50, rtt
    sessions = loadtest("connect", "-n", "40", "-k", "8", "-p", port)
    assert sessions["errors"] == 0 and sessions["completed"] == 40, sessions
    idle = loadtest("idle", "-n", "10", "-k", "5", "-d", "0.5", "-p", port)
    assert idle["errors"] == 0 and idle["alive_at_end"] == 10, idle


def test_refused_upgrade_and_closed_port_are_counted_apart(server_factory):
    server = server_factory(no_rate_limit())
    refused = loadtest("connect", "-n", "3", "-k", "1", "-p", str(server.port), "--path", "/not-socket-io/")
    assert refused["err"]["handshake"] == 3 and refused["completed"] == 0, refused
    closed = loadtest("connect", "-n", "3", "-k", "1", "-p", str(free_port()), "-E", "2")
    assert closed["err"]["connect"] == 3, closed


def _read_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _read_frame(conn):
    b0, b1 = _read_exact(conn, 2)
    length = b1 & 0x7F
    if length == 126:
        length = struct.unpack("!H", _read_exact(conn, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", _read_exact(conn, 8))[0]
    mask = _read_exact(conn, 4) if b1 & 0x80 else b"\0\0\0\0"
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(_read_exact(conn, length)))
    return b0 & 0x0F, payload


def _frame(first_byte, payload):
    assert len(payload) < 126
    return bytes([first_byte, len(payload)]) + payload


def _echo_server(mode):
    """A WebSocket echo on a free port: `fragments` replies in two frames after a ping; `reserved` answers
    the first message with a frame whose RSV1 bit is set (no extension was negotiated)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    pongs = []

    def serve(conn):
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key"))
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            try:
                while True:
                    opcode, payload = _read_frame(conn)
                    if opcode == 0x8:
                        return
                    if opcode == 0xA:
                        pongs.append(payload)
                        continue
                    if mode == "reserved":
                        conn.sendall(_frame(0xC1, payload[:100]))
                        continue
                    half = len(payload) // 2
                    conn.sendall(_frame(0x89, b"hi") + _frame(0x01, payload[:half]) + _frame(0x80, payload[half:]))
            except (ConnectionError, OSError):
                return

    def accept_loop():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    return listener, pongs


def test_fragmented_replies_are_reassembled_and_pings_answered():
    listener, pongs = _echo_server("fragments")
    try:
        port = str(listener.getsockname()[1])
        result = loadtest("rtt", "--proto", "raw", "-c", "2", "-d", "0.5", "-w", "0.1", "-p", port)
        assert result["errors"] == 0 and result["completed"] > 10, result
        assert result["ws_pings_answered"] >= result["completed"] and pongs and pongs[0] == b"hi"
    finally:
        listener.close()


def test_a_frame_with_reserved_bits_is_a_protocol_error():
    listener, _ = _echo_server("reserved")
    try:
        result = loadtest("rtt", "--proto", "raw", "-c", "2", "-d", "0.5", "-w", "0", "-p", str(listener.getsockname()[1]))
        assert result["err"]["protocol"] == 2 and result["completed"] == 0, result
    finally:
        listener.close()


def test_raw_connect_sends_its_first_message_once_upgraded():
    """`connect --proto raw` (make bench's readiness check for the raw echo): the first frame goes out after the
    upgrade has set up the pipeline, so it is encoded and answered."""
    listener, _ = _echo_server("fragments")
    try:
        result = loadtest("connect", "--proto", "raw", "-n", "3", "-k", "1", "-p", str(listener.getsockname()[1]))
        assert result["errors"] == 0 and result["completed"] == 3, result
    finally:
        listener.close()
