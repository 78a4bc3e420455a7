"""Finding 3: connection exhaustion. Unparsable and smuggling-shaped requests get 400 and a closed connection;
half-sent requests and idle keep-alive connections are closed after their timeouts (a held long-poll is not);
per-address limits on open connections and on the connection rate, with exempt addresses."""
import socket
import time

import requests

from conftest import mirror_config

ATTACKS = {
    "garbage request line": b"GARBAGE\r\n\r\n",
    "bare LF line endings": b"GET / HTTP/1.1\nHost: x\n\n",
    "Content-Length with Transfer-Encoding": b"POST /webhooks/rest/webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two different Content-Lengths": b"POST /webhooks/rest/webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "TLS ClientHello on the plain port": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 64,
    "header over max_header_bytes": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n",
    "more than max_header_count fields": b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n",
}


def read_all(sock, timeout):
    """Everything the server sends until it closes (b'...<EOF>') or `timeout` passes (b'...<open>')."""
    sock.settimeout(timeout)
    out = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return out + b"<EOF>"
            out += chunk
    except socket.timeout:
        return out + b"<open>"
    except ConnectionResetError:
        return out + b"<EOF>"


def connect(server, source="127.0.0.1"):
    s = socket.socket()
    s.bind((source, 0))
    s.connect(("127.0.0.1", server.port))
    return s


def limits(**values):
    body = "\n".join(f"    {k}: {v}" for k, v in values.items())
    return mirror_config(extra="") .replace("store:", f"server:\n  limits:\n{body}\nstore:", 1)


def test_unparsable_requests_get_400_and_are_closed(server_factory):
    server = server_factory(mirror_config())
    for name, data in ATTACKS.items():
        s = connect(server)
        try:
            s.sendall(data)
            out = read_all(s, 5)
        finally:
            s.close()
        assert out.startswith(b"HTTP/1.1 400"), (name, out[:200])
        assert out.endswith(b"<EOF>"), (name, "connection left open")
    # The server still serves everyone else.
    assert requests.post(server.url + "/webhooks/rest/webhook", json={"sender": "ok", "message": "hi"}, timeout=10).status_code == 200


def test_half_sent_requests_and_idle_connections_are_closed(server_factory):
    server = server_factory(limits(header_timeout=1, idle_timeout=1))
    half = connect(server)
    half.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")   # never finished
    silent = connect(server)                                # never sends anything
    idle = connect(server)
    idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")     # one request, then keep-alive idle
    try:
        t0 = time.monotonic()
        assert read_all(half, 8).endswith(b"<EOF>")
        assert read_all(silent, 8).endswith(b"<EOF>")
        out = read_all(idle, 8)
        assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"<EOF>")
        assert time.monotonic() - t0 < 8
    finally:
        for s in (half, silent, idle):
            s.close()


def test_a_long_poll_outlives_the_idle_timeout(server_factory):
    # ping_interval 3 s: the server holds a polling GET for up to 3 s, longer than the 1 s idle timeout.
    server = server_factory(limits(header_timeout=1, idle_timeout=1).replace("  socketio:\n", "  socketio:\n    ping_interval: 3\n", 1))
    r = requests.get(server.url + "/socket.io/?EIO=4&transport=polling", timeout=10)
    sid = r.text.split('"sid":"')[1].split('"')[0]
    t0 = time.monotonic()
    held = requests.get(server.url + f"/socket.io/?EIO=4&transport=polling&sid={sid}", timeout=10)
    assert held.status_code == 200 and held.text == "2"     # the server's ping, after the whole interval
    assert time.monotonic() - t0 > 2


def test_per_address_connection_limit(server_factory):
    server = server_factory(limits(header_timeout=30, max_connections_per_address=5, exempt_addresses='["127.0.0.3"]'))
    held = [connect(server, "127.0.0.2") for _ in range(5)]
    try:
        time.sleep(0.2)
        sixth = connect(server, "127.0.0.2")
        assert read_all(sixth, 3) == b"<EOF>"                   # closed at once, nothing read
        sixth.close()
        # Another address, and an exempt one, are not affected.
        for source in ("127.0.0.4", "127.0.0.3"):
            s = connect(server, source)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_all(s, 5).startswith(b"HTTP/1.1 200")
            s.close()
        # Closing one frees a slot.
        held.pop().close()
        time.sleep(0.2)
        again = connect(server, "127.0.0.2")
        again.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_all(again, 5).startswith(b"HTTP/1.1 200")
        again.close()
        assert "HTTP connection refused" in server.logs()
    finally:
        for s in held:
            s.close()


def test_per_address_connection_rate(server_factory):
    server = server_factory(limits(connections_per_second_per_address=1, connection_burst_per_address=3, exempt_addresses="[]"))
    outcomes = []
    for _ in range(6):
        s = connect(server, "127.0.0.5")   # an address the startup probe did not use
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        outcomes.append(read_all(s, 5).startswith(b"HTTP/1.1 200"))
        s.close()
    assert outcomes[:3] == [True, True, True]
    assert not all(outcomes[3:])
    # The log says so once, not once per connection.
    assert server.logs().count("HTTP connection refused") == 1
