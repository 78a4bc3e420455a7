"""isolation: process (issue 15): a third-party agent that segfaults, aborts, exits or hangs runs in a host process
of its own; each fault costs only the turns it was answering (the fallback), the crash is logged with the signal
and the plugin's last stderr lines, the host restarts with backoff, a circuit breaker opens after repeated crashes,
and the other agents keep answering 20 conversations throughout. The server's PID never changes."""
import os
import signal
import subprocess
import threading
import time

import requests

from conftest import MIRROR, ROOT, start

HERE = os.path.dirname(os.path.abspath(__file__))


def build_crashy(tmp_path):
    out = str(tmp_path / "libcrashy.so")
    subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-shared", "-fPIC",
                    "-I", os.path.join(ROOT, "include"), "-o", out, os.path.join(HERE, "plugins", "crashy.c")], check=True)
    return out


def config(crashy, extra=""):
    return f"""channels:
  rest:
agents:
  - name: mirror
    plugin: {MIRROR}
  - name: crashy
    plugin: {crashy}
    isolation: process
    deadline: 1
    route: {{prefix: "crash"}}
{extra}
store:
  type: sqlite
  path: parley.db
dispatcher:
  turn_deadline: 5
"""


def say(url, sender, text):
    r = requests.post(f"{url}/webhooks/rest/webhook", json={"sender": sender, "message": text}, timeout=15)
    assert r.status_code == 200, r.text
    return [m.get("text") for m in r.json()]


FALLBACK = "Sorry, something went wrong. Please try again."


def test_a_crashing_isolated_plugin_costs_its_turns_only(tmp_path):
    server = start(config(build_crashy(tmp_path)), workdir=str(tmp_path))
    pid = server.proc.pid
    stop = threading.Event()
    answered, wrong = [0], []

    def chatter(n):
        while not stop.is_set():
            got = say(server.url, f"user-{n}", f"hello {n}")
            if got == [f"hello {n}"]:
                answered[0] += 1
            else:
                wrong.append(got)

    threads = [threading.Thread(target=chatter, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    try:
        assert say(server.url, "c", "crash now") == ["crashy: crash now"]        # works in its process
        for fault in ("segv", "abort", "exit"):
            assert say(server.url, "c", f"crash:{fault}") == [FALLBACK], fault  # the turn gets the fallback
            time.sleep(0.5)                                                    # past the restart backoff
            assert say(server.url, "c", "crash again?") == ["crashy: crash again?"], fault
        logs = server.logs()
        assert "died with signal 11 (SIGSEGV)" in logs and "crashy: about to segv" in logs, logs[-3000:]
        assert "died with signal 6 (SIGABRT)" in logs and "died with exit status 3" in logs
        # A hang: the user gets the fallback at the agent's deadline; 2 s later the host gives up on the hung
        # thread and exits, and Parley restarts it.
        started = time.monotonic()
        assert say(server.url, "h", "crash:hang") == [FALLBACK]
        assert time.monotonic() - started < 3
        time.sleep(3)
        logs = server.logs()
        assert "handle() has not returned for" in logs and "died with exit status 70" in logs, logs[-2000:]
        assert say(server.url, "h", "crash after the hang") == ["crashy: crash after the hang"]
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=20)
    assert wrong == [] and answered[0] > 50, (wrong[:5], answered[0])
    assert server.proc.pid == pid and server.proc.poll() is None
    metrics = requests.get(server.url + "/metrics", timeout=5).text
    assert 'parley_plugin_crashes_total{plugin="crashy"} 4' in metrics, [l for l in metrics.splitlines() if "crash" in l]
    server.stop()


def test_the_breaker_opens_after_repeated_crashes_and_answers_at_once(tmp_path):
    server = start(config(build_crashy(tmp_path)), workdir=str(tmp_path))
    try:
        for i in range(5):
            assert say(server.url, "b", "crash:segv") == [FALLBACK]
            time.sleep(2.0 if i >= 3 else 0.9)   # past each backoff (0.1, 0.2, 0.4, 0.8, 1.6 s)
        assert "circuit breaker open" in server.logs()
        started = time.monotonic()
        assert say(server.url, "b", "crash are you there") == [FALLBACK]   # at once, no deadline wait
        assert time.monotonic() - started < 0.5
        assert "circuit breaker open after 5 crashes" in server.logs()
        assert say(server.url, "x", "the mirror answers") == ["the mirror answers"]
    finally:
        server.stop()


def test_sigterm_with_a_plugin_hung_in_process_still_exits(tmp_path):
    """In-process, a handle() that never returns holds the turn's own thread; SIGTERM still ends the process within
    server.shutdown_timeout + 2 s, saying why."""
    crashy = build_crashy(tmp_path)
    server = start(f"""server:
  shutdown_timeout: 2
channels:
  rest:
agents:
  - name: crashy
    plugin: {crashy}
    deadline: 1
store:
  type: sqlite
  path: parley.db
""", workdir=str(tmp_path))
    assert say(server.url, "h", "crash:hang") == [FALLBACK]
    assert say(server.url, "h2", "still answering") == ["crashy: still answering"]
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=15)
    assert time.monotonic() - started < 6
    assert "a plugin call is stuck inside handle()" in server.logs()
