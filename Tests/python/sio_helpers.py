"""Small helpers around the python-socketio client and a raw Engine.IO polling client for byte-exact checks."""
import contextlib
import json
import os
import socket
import subprocess
import tempfile
import queue
import time

import pytest
import requests
import socketio

WAIT = 10  # seconds to wait for an expected event (a bound, not a speed assertion)


@contextlib.contextmanager
def running_protocol_server(*extra_args):
    """Runs `parley-protocol-server` (from $PARLEY_BIN, default .build/debug) on a free 127.0.0.1 port until
    the block ends; yields the port once a polling handshake succeeds (at most 30 s)."""
    bin_dir = os.environ.get("PARLEY_BIN", os.path.join(os.getcwd(), ".build", "debug"))
    exe = os.path.join(bin_dir, "parley-protocol-server")
    if not os.path.exists(exe):
        pytest.fail(f"{exe} not found: build it with `swift build --product parley-protocol-server` or set PARLEY_BIN")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tempfile.NamedTemporaryFile(prefix="parley-protocol-server-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [exe, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *extra_args],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                with open(log.name, errors="replace") as f:
                    pytest.fail(f"parley-protocol-server exited with {proc.returncode}: {f.read()}")
            try:
                if requests.get(f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail("parley-protocol-server did not answer within 30 s")
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.unlink(log.name)


class Client:
    """A python-socketio client that queues every received event as (name, args)."""

    def __init__(self, url, namespace="/", transports=None, auth=None, bot_event="bot_uttered", socketio_path=None):
        self.events = queue.Queue()
        self.errors = queue.Queue()   # parley_error payloads (refusals), kept apart from the replies
        self.namespace = namespace
        self.sio = socketio.Client(reconnection=False)
        for name in ("session_confirm", bot_event):
            self.sio.on(name, self._handler(name), namespace=namespace)
        self.sio.on("parley_error", lambda *args: self.errors.put(args[0] if args else None), namespace=namespace)
        kwargs = {"namespaces": [namespace], "wait_timeout": WAIT}
        if transports:
            kwargs["transports"] = transports
        if auth is not None:
            kwargs["auth"] = auth
        if socketio_path is not None:
            kwargs["socketio_path"] = socketio_path
        self.sio.connect(url, **kwargs)

    def _handler(self, name):
        def on_event(*args):
            self.events.put((name, list(args)))
        return on_event

    @property
    def sid(self):
        return self.sio.get_sid(self.namespace)

    def emit(self, event, *args):
        self.sio.emit(event, *args, namespace=self.namespace) if args else self.sio.emit(event, namespace=self.namespace)

    def next(self, timeout=WAIT):
        return self.events.get(timeout=timeout)

    def next_error(self, timeout=WAIT):
        """The next refusal (`parley_error` payload) this socket got."""
        return self.errors.get(timeout=timeout)

    def request_session(self, session_id=None, payload="default"):
        data = {"session_id": session_id} if payload == "default" else payload
        self.emit("session_request", data)
        name, args = self.next()
        assert name == "session_confirm", (name, args)
        return args[0]

    def say(self, text, session_id=None, event="user_uttered", **extra):
        data = {"message": text}
        if session_id is not None:
            data["session_id"] = session_id
        data.update(extra)
        self.emit(event, data)

    def replies(self, n):
        out = []
        for _ in range(n):
            name, args = self.next()
            assert name != "session_confirm", (name, args)
            out.append(args[0] if args else None)
        return out

    def close(self):
        try:
            self.sio.disconnect()
        except Exception:
            pass


class RawPolling:
    """A raw Engine.IO v4 long-polling client: exact bytes on the wire."""

    def __init__(self, base, path="/socket.io/"):
        self.base = base
        self.path = path
        r = requests.get(f"{base}{path}?EIO=4&transport=polling", timeout=WAIT)
        assert r.status_code == 200, r.text
        assert r.text.startswith("0"), r.text
        self.open = json.loads(r.text[1:])
        self.sid = self.open["sid"]

    def url(self):
        return f"{self.base}{self.path}?EIO=4&transport=polling&sid={self.sid}&t={time.time()}"

    def send(self, *packets):
        r = requests.post(self.url(), data="\x1e".join(packets).encode(), headers={"Content-Type": "text/plain;charset=UTF-8"}, timeout=WAIT)
        assert r.status_code == 200, r.text

    def receive(self):
        """The packets of the next poll, skipping pings (answered with pongs)."""
        while True:
            r = requests.get(self.url(), timeout=WAIT + 30)
            assert r.status_code == 200, r.text
            packets = [p for p in r.text.split("\x1e") if p]
            real = [p for p in packets if p != "2"]
            if len(real) < len(packets):
                self.send("3")
            if real:
                return real


def drain(client, wait=0.7):
    """Every (name, args) the client got within `wait` seconds."""
    out = []
    deadline = time.monotonic() + wait
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return out
        try:
            out.append(client.next(timeout=left))
        except queue.Empty:
            return out
