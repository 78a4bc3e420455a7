"""Socket.IO connection state recovery (socket.io >= 4.6 `connectionStateRecovery`), opt-in: a client that drops
comes back with the same socket id and rooms and gets what it missed. Driven here with the protocol the official
clients speak (CONNECT {pid, offset}, the offset as each event's last argument), over a real WebSocket; and with
the official client bundle in headless Chromium when that bundle is on this machine (make bench builds it)."""
import json
import os
import time

import pytest
import websocket

from conftest import mirror_config, run_to_exit

RECOVERY = """
rate_limit:
  messages_per_second: 0
connection_state_recovery:
  max_disconnection_duration: 30
"""


class Raw:
    """A Socket.IO v5 client on one WebSocket that keeps pid and the last offset, as socket.io-client does."""

    def __init__(self, url, pid=None, offset=None):
        self.ws = websocket.create_connection(url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket", timeout=10)
        assert self.ws.recv().startswith("0{")
        auth = {"pid": pid, "offset": offset} if pid else {}
        self.ws.send("40" + (json.dumps(auth) if auth else ""))
        reply = self.ws.recv()
        assert reply.startswith("40{"), reply
        self.connect = json.loads(reply[2:])
        self.offset = offset

    def emit(self, *args):
        self.ws.send("42" + json.dumps(list(args)))

    def event(self):
        while True:
            m = self.ws.recv()
            if m == "2":
                self.ws.send("3")
                continue
            assert m.startswith("42"), m
            data = json.loads(m[2:])
            self.offset = data.pop()   # the offset, last argument
            return data

    def drop(self):
        self.ws.sock.close()   # no goodbye: the connection just goes away


def test_a_dropped_client_recovers_its_socket_and_the_reply_it_missed(server_factory):
    server = server_factory(mirror_config(extra_socketio=RECOVERY))
    c = Raw(server.url)
    sid, pid = c.connect["sid"], c.connect["pid"]
    c.emit("session_request", {"session_id": "csr"})
    assert c.event() == ["session_confirm", "csr"]
    c.emit("user_uttered", {"message": "hello", "session_id": "csr"})
    assert c.event() == ["bot_uttered", {"text": "hello"}]
    c.emit("user_uttered", {"message": "/slow", "session_id": "csr"})
    time.sleep(0.1)
    c.drop()
    time.sleep(1.3)   # "slow done" is sent to the session room while nobody is connected
    back = Raw(server.url, pid=pid, offset=c.offset)
    assert back.connect == {"sid": sid, "pid": pid}   # recovered: same socket
    assert back.event() == ["bot_uttered", {"text": "slow done"}]
    # Still in its session room, without a new session_request.
    back.emit("user_uttered", {"message": "still here", "session_id": "csr"})
    assert back.event() == ["bot_uttered", {"text": "still here"}]
    back.ws.close()
    # An unknown pid or an offset that is no longer kept gives a new socket.
    other = Raw(server.url, pid="nope", offset="1")
    assert other.connect["sid"] != sid and other.connect["pid"] != "nope"
    other.ws.close()


def test_recovery_with_the_redis_adapter_is_refused_at_startup():
    config = mirror_config(extra_socketio=RECOVERY) + "\nadapter:\n  type: redis\n  url: redis://127.0.0.1:1\n"
    code, out = run_to_exit(config)
    assert code != 0
    assert "channels.socketio.connection_state_recovery" in out and "parley.resume_from" in out, out


BUNDLE = os.path.join(os.path.dirname(__file__), "..", "..", "bench", ".node-sio", "node_modules", "socket.io", "client-dist", "socket.io.min.js")


@pytest.mark.skipif(not os.path.exists(BUNDLE), reason="the official client bundle is built by make bench (bench/.node-sio)")
def test_the_official_client_in_chromium_reports_recovered(server_factory, tmp_path):
    from test_chat_page import CHROMIUM, Browser
    if not CHROMIUM:
        pytest.skip("chromium is not installed")
    server = server_factory(mirror_config(extra_socketio=RECOVERY + "cors_origins: \"*\"\n"))
    with open(BUNDLE, encoding="utf-8") as f:
        bundle = f.read()
    page = tmp_path / "recover.html"
    page.write_text(f"""<!doctype html><script>{bundle}</script><script>
window.log = [];
const socket = io("{server.url}", {{ transports: ["websocket"], reconnectionDelay: 100, reconnectionDelayMax: 200 }});
socket.on("connect", () => {{
  window.log.push("connect recovered=" + socket.recovered);
  if (!socket.recovered) socket.emit("session_request", {{ session_id: "browser" }});
}});
socket.on("session_confirm", () => socket.emit("user_uttered", {{ message: "first", session_id: "browser" }}));
socket.on("bot_uttered", (m) => window.log.push("bot " + m.text));
window.drop = () => socket.io.engine.close();   // what a lost network looks like to the client
window.send = (t) => socket.emit("user_uttered", {{ message: t, session_id: "browser" }});
</script>""")
    browser = Browser()
    try:
        browser.call("Page.navigate", url="file://" + str(page))
        browser.wait_for("window.log && window.log.includes('bot first')")
        browser.js("window.send('/slow'); true")
        time.sleep(0.2)
        browser.js("window.drop(); true")
        browser.wait_for("window.log.includes('connect recovered=true') && window.log.includes('bot slow done')")
        log = browser.js("JSON.stringify(window.log)")
        assert json.loads(log) == ["connect recovered=false", "bot first", "connect recovered=true", "bot slow done"], log
    finally:
        browser.close()
