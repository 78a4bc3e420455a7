#!/usr/bin/env python3
# usage: parley-protocol-server --port 3001 --echo-ping-interval-ms 20000 &  python3 scripts/engineio-idle-memory.py 3001 5000 <server pid>
"""Opens N WebSocket-only Engine.IO sessions, answers pings, and reports the server's RSS growth per session."""
import selectors, socket, sys, time

port, n, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
path = sys.argv[4] if len(sys.argv) > 4 else "/engine.io/"

def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

def frame(text):
    data = text.encode(); mask = b"\x01\x02\x03\x04"
    return bytes([0x81, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))

req = (f"GET {path}?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
pong = frame("3")
sel = selectors.DefaultSelector()
dead = 0
def pump(timeout):
    global dead
    for key, _ in sel.select(timeout):
        s = key.fileobj
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if not data:
            sel.unregister(s); s.close(); dead += 1; continue
        for _ in range(data.count(b"\x81\x012")):
            s.sendall(pong)
time.sleep(0.5)
before = rss_kb(pid)
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(req)
    sel.register(s, selectors.EVENT_READ)
    if i % 20 == 19:
        pump(0)
end = time.time() + 5
while time.time() < end:
    pump(0.05)
after = rss_kb(pid)
alive = n - dead
print(f"sessions_open={alive}/{n} rss_before_kb={before} rss_after_kb={after} per_session_bytes={(after-before)*1024//max(alive,1)}")
