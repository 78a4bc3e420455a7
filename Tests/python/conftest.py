"""Shared fixtures for the black-box tests: start a real `parley serve` on a free port with a temp
configuration and a temp database, talk to it with independent clients, stop it with SIGTERM.

Environment:
  PARLEY_BIN      folder holding the `parley` executable (default .build/debug)
  PARLEY_PLUGINS  folder holding the built plugins (default build/plugins)
"""
import os
import signal
import socket
import subprocess
import tempfile
import textwrap
import time

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.abspath(os.environ.get("PARLEY_BIN", os.path.join(ROOT, ".build", "debug")))
PLUGINS = os.path.abspath(os.environ.get("PARLEY_PLUGINS", os.path.join(ROOT, "build", "plugins")))
PARLEY = os.path.join(BIN, "parley")
MIRROR = os.path.join(PLUGINS, "libmirror.so")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running `parley serve` process."""

    def __init__(self, proc, port, workdir, log_path):
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.workdir = workdir
        self.log_path = log_path

    def logs(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def mirror_config(extra_socketio="", extra="", persistence=True, channels=None):
    """A parley.yml serving the C mirror agent; `extra_socketio` is indented under channels.socketio."""
    socketio = textwrap.indent(textwrap.dedent(extra_socketio).strip(), "    ") if extra_socketio.strip() else ""
    if channels is None:
        channels = f"""channels:
  socketio:
    session_persistence: {"true" if persistence else "false"}
{socketio}
  rest:
"""
    return f"""{channels}
agents:
  - name: mirror
    plugin: {MIRROR}
store:
  type: sqlite
  path: parley.db
{textwrap.dedent(extra)}
"""


def _serve_command(config_text, files, workdir=None):
    """A temp folder holding `files` and `parley.yml` (when given), and the `parley serve` command for it."""
    workdir = workdir or tempfile.mkdtemp(prefix="parley-test-")
    for name, content in (files or {}).items():
        with open(os.path.join(workdir, name), "w", encoding="utf-8") as f:
            f.write(content)
    cmd = [PARLEY, "serve"]
    if config_text is not None:
        with open(os.path.join(workdir, "parley.yml"), "w", encoding="utf-8") as f:
            f.write(config_text)
        cmd += ["--config", "parley.yml"]
    return workdir, cmd


def start(config_text=None, args=(), env=None, wait=True, workdir=None, files=None):
    """Starts `parley serve` in a temp folder; returns a Server (waits until the REST health route answers)."""
    workdir, cmd = _serve_command(config_text, files, workdir)
    port = free_port()
    cmd += ["--port", str(port)] + list(args)
    log_path = os.path.join(workdir, "parley.log")
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    server = Server(proc, port, workdir, log_path)
    if wait:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"parley exited with {proc.returncode}:\n{server.logs()}")
            try:
                requests.get(server.url + "/", timeout=0.5)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    server.stop(signal.SIGKILL)
                    raise AssertionError(f"parley did not start:\n{server.logs()}")
                time.sleep(0.1)
    return server


def run_to_exit(config_text=None, args=(), env=None, files=None, timeout=30):
    """Runs `parley serve` expecting it to exit on its own; returns (exit code, output)."""
    workdir, cmd = _serve_command(config_text, files)
    cmd += list(args)
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=full_env)
    return p.returncode, p.stdout + p.stderr


@pytest.fixture
def server_factory():
    """Starts servers on demand and stops them all at the end of the test."""
    started = []

    def factory(*a, **kw):
        s = start(*a, **kw)
        started.append(s)
        return s

    yield factory
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def mirror_server():
    """One mirror server with session persistence, shared by a module's tests."""
    s = start(mirror_config(persistence=True))
    yield s
    s.stop()


@pytest.fixture
def small_disk():
    """A 2 MiB tmpfs for the store, which a test fills to make commits fail (needs root, as CI runs)."""
    path = tempfile.mkdtemp(prefix="parley-disk-")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", path], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield path
    subprocess.run(["umount", "-l", path])
