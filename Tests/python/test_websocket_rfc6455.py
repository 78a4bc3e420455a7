"""Finding 5: RFC 6455 strictness of the WebSocket layer, with hand-built frames over a raw TCP socket.

The cases follow the Autobahn test suite's case list (autobahntestsuite 25.10.1, read from its source:
autobahntestsuite/case/case*.py): 2.5 (ping over 125 bytes), 3.x (RSV bits without an extension), 4.1.x/4.2.x
(reserved opcodes), 5.1/5.2 (fragmented control frames), 5.9 (continuation without a message), 5.18 (a new
message inside a fragmented one), 6.3.1/6.4.x (invalid UTF-8, whole and across fragments), 7.3.2 (close frame
with a 1-byte body), 7.5.1 (close reason not UTF-8), 7.9.x (close codes that must not be sent); plus unmasked
client frames (RFC 6455 5.1), which Autobahn cannot send as a client. Before: invalid UTF-8 was echoed as U+FFFD,
unmasked frames were accepted, RSV bits and reserved opcodes were ignored.
"""
import base64
import os
import socket
import struct
import zlib

import pytest

from sio_helpers import running_protocol_server

TIMEOUT = 5


@pytest.fixture(scope="module")
def server_port():
    with running_protocol_server() as port:
        yield port


@pytest.fixture(scope="module")
def deflate_port():
    with running_protocol_server("--per-message-deflate") as port:
        yield port


class RawWS:
    """A WebSocket client that writes frames byte by byte as the test builds them."""

    def __init__(self, port, deflate=False):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        ext = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
        self.sock.sendall((f"GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Sec-WebSocket-Version: 13\r\n{ext}\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            assert chunk, "closed during the handshake"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        self.buffer = b""
        opcode, payload = self.frame()
        assert opcode == 1 and payload.startswith(b"0{"), payload   # the Engine.IO open packet

    def send(self, opcode, payload=b"", fin=True, rsv=0, mask=True, raw_length=None):
        first = (0x80 if fin else 0) | (rsv << 4) | opcode
        length = len(payload) if raw_length is None else raw_length
        if length < 126:
            header = struct.pack("!BB", first, (0x80 if mask else 0) | length)
        elif length < 65536:
            header = struct.pack("!BBH", first, (0x80 if mask else 0) | 126, length)
        else:
            header = struct.pack("!BBQ", first, (0x80 if mask else 0) | 127, length)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            header += key
        self.sock.sendall(header + payload)

    def _read(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def frame(self):
        b0, b1 = self._read(2)
        length = b1 & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._read(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._read(8))[0]
        return b0 & 0x0F, self._read(length)

    def close_code(self):
        """Reads frames (skipping pings and messages) until the server's close frame; returns its code."""
        while True:
            try:
                opcode, payload = self.frame()
            except (ConnectionError, OSError):
                return None
            if opcode == 8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005

    def echo(self, text):
        self.send(1, b"4" + text.encode())
        while True:
            opcode, payload = self.frame()
            if opcode == 1 and payload != b"2":
                return payload

    def close(self):
        self.sock.close()


INVALID_UTF8 = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"   # Autobahn 6.3.1: a surrogate


@pytest.mark.parametrize("case, send", [
    ("unmasked client frame (RFC 6455 5.1)", lambda ws: ws.send(1, b"4hello", mask=False)),
    ("3.1 RSV = 1 (RSV3)", lambda ws: ws.send(1, b"4hello", rsv=1)),
    ("3.2 RSV = 2 (RSV2)", lambda ws: ws.send(1, b"4hello", rsv=2)),
    ("3.4 RSV = 4 (RSV1) without permessage-deflate", lambda ws: ws.send(1, b"4hello", rsv=4)),
    ("4.1.1 reserved opcode 3", lambda ws: ws.send(3)),
    ("4.1.5 reserved opcode 7", lambda ws: ws.send(7, b"x")),
    ("4.2.1 reserved opcode 11", lambda ws: ws.send(11)),
    ("4.2.5 reserved opcode 15", lambda ws: ws.send(15, b"x")),
    ("2.5 ping over 125 bytes", lambda ws: ws.send(9, b"x" * 126)),
    ("5.1 fragmented ping", lambda ws: (ws.send(9, b"ab", fin=False), ws.send(0, b"cd"))),
    ("5.2 fragmented pong", lambda ws: (ws.send(10, b"ab", fin=False), ws.send(0, b"cd"))),
    ("5.9 continuation without a message", lambda ws: ws.send(0, b"4x")),
    ("5.18 new text inside a fragmented one", lambda ws: (ws.send(1, b"4a", fin=False), ws.send(1, b"b"))),
    ("7.3.2 close with a 1-byte body", lambda ws: ws.send(8, b"\x03")),
    ("7.9.1 close code 0", lambda ws: ws.send(8, struct.pack("!H", 0))),
    ("7.9.4 close code 1005", lambda ws: ws.send(8, struct.pack("!H", 1005))),
    ("7.9.9 close code 2999", lambda ws: ws.send(8, struct.pack("!H", 2999))),
])
def test_protocol_errors_close_with_1002(server_port, case, send):
    ws = RawWS(server_port)
    try:
        send(ws)
        assert ws.close_code() == 1002, case
    finally:
        ws.close()


@pytest.mark.parametrize("case, send", [
    ("6.3.1 invalid UTF-8 in one frame", lambda ws: ws.send(1, b"4" + INVALID_UTF8)),
    ("FF FE (the finding)", lambda ws: ws.send(1, b"4\xff\xfe")),
    ("6.4.1 invalid UTF-8 across fragments", lambda ws: (ws.send(1, b"4" + INVALID_UTF8[:11], fin=False),
                                                         ws.send(0, INVALID_UTF8[11:14], fin=False),
                                                         ws.send(0, INVALID_UTF8[14:]))),
    ("overlong encoding of '/'", lambda ws: ws.send(1, b"4\xc0\xaf")),
    ("truncated sequence at the end", lambda ws: ws.send(1, b"4abc\xe2\x82")),
    ("7.5.1 close reason not UTF-8", lambda ws: ws.send(8, struct.pack("!H", 1000) + b"\xce\xba\xe1\xbd\xb9\xed\xa0\x80")),
])
def test_invalid_utf8_closes_with_1007(server_port, case, send):
    ws = RawWS(server_port)
    try:
        send(ws)
        assert ws.close_code() == 1007, case
    finally:
        ws.close()


def test_valid_traffic_passes(server_port):
    ws = RawWS(server_port)
    try:
        assert ws.echo("héllo ✓ 😀") == "4héllo ✓ 😀".encode()
        # A character split across two fragments is fine (Autobahn 6.2.3-style), with a ping in between (5.6).
        ws.send(1, b"4\xe2\x9c", fin=False)
        ws.send(9, b"ping")
        ws.send(0, b"\x93 ok")
        seen = []
        while len(seen) < 2:
            opcode, payload = ws.frame()
            if payload != b"2":
                seen.append((opcode, payload))
        assert (10, b"ping") in seen and (1, "4✓ ok".encode()) in seen
        # A close with a valid code and reason is echoed.
        ws.send(8, struct.pack("!H", 1000) + b"bye")
        assert ws.close_code() == 1000
    finally:
        ws.close()


def test_invalid_utf8_after_permessage_deflate_closes_with_1007(deflate_port):
    ws = RawWS(deflate_port, deflate=True)
    try:
        compressor = zlib.compressobj(wbits=-15)
        data = compressor.compress(b"4" + INVALID_UTF8) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(b"\x00\x00\xff\xff")
        ws.send(1, data[:-4], rsv=4)   # RSV1 = compressed (rsv bits are RSV1<<2 | RSV2<<1 | RSV3)
        assert ws.close_code() == 1007
    finally:
        ws.close()


def test_other_connections_are_unaffected(server_port):
    good = RawWS(server_port)
    bad = RawWS(server_port)
    try:
        bad.send(1, b"4\xff\xfe")
        assert bad.close_code() == 1007
        assert good.echo("still here") == b"4still here"
    finally:
        good.close()
        bad.close()
