"""Graceful shutdown with connected sockets and a running turn."""
import signal
import threading
import time

from conftest import mirror_config
from sio_helpers import Client


def test_sigterm_finishes_the_running_turn_and_closes_sockets(server_factory):
    server = server_factory(mirror_config(), args=["--log-level", "debug"])
    c = Client(server.url, transports=["websocket"])
    disconnected = threading.Event()
    c.sio.on("disconnect", lambda *a: disconnected.set())
    sid = c.request_session(None)
    c.say("/slow", sid)
    # Wait until the server has taken the message (its debug line), so the turn is running (1 s in the plugin).
    deadline = time.monotonic() + 10
    while "socketio: turn " not in server.logs() and time.monotonic() < deadline:
        time.sleep(0.02)
    server.proc.send_signal(signal.SIGTERM)
    assert c.replies(1) == [{"text": "slow done"}]
    assert disconnected.wait(10)
    assert server.proc.wait(timeout=20) == 0, server.logs()
    logs = server.logs()
    assert "shutting down" in logs and "stopped" in logs
