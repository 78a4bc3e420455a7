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

from conftest import MIRROR, PARLEY, PLUGINS, ROOT, start

HERE = os.path.dirname(os.path.abspath(__file__))


def build_crashy(tmp_path, *defines, name="libcrashy.so"):
    out = str(tmp_path / name)
    subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-shared", "-fPIC", "-pthread", *defines,
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


class Chatter:
    """20 conversations with the mirror agent, each checking every answer, while a test hurts another plugin."""

    def __init__(self, url, n=20):
        self.url, self.stop, self.answered, self.wrong = url, threading.Event(), [0], []
        self.threads = [threading.Thread(target=self.chat, args=(i,)) for i in range(n)]

    def chat(self, n):
        while not self.stop.is_set():
            got = say(self.url, f"user-{n}", f"hello {n}")
            if got == [f"hello {n}"]:
                self.answered[0] += 1
            else:
                self.wrong.append(got)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=20)
        assert self.wrong == [] and self.answered[0] > 20, (self.wrong[:5], self.answered[0])


def test_isolated_contract_breakers_cost_their_turns_only(tmp_path):
    """Complete twice, complete after the deadline, emit floods, a hung cancel hook, a CPU-time limit and a memory
    leak against memory_limit_mb: each costs at most its own turn, the others keep answering, the PID stays."""
    server = start(config(build_crashy(tmp_path), extra="""    memory_limit_mb: 128
    cpu_limit_seconds: 1"""), workdir=str(tmp_path))
    pid = server.proc.pid
    try:
        with Chatter(server.url):
            assert say(server.url, "t", "crash:twice") == ["crashy: first"]        # the first completion counts
            assert say(server.url, "l", "crash:late") == [FALLBACK]                # completes at 1.5 s, deadline 1 s
            assert say(server.url, "f", "crash:flood") == ["crashy: crash:flood"]  # 5000 emits, bounded queue
            assert say(server.url, "k", "crash:cancelhang") == [FALLBACK]          # its cancel hook never returns
            assert say(server.url, "k", "crash: the host still answers") == ["crashy: crash: the host still answers"]
            assert say(server.url, "s", "crash:spin") == [FALLBACK]                # SIGXCPU after 1 s of CPU
            for _ in range(100):                                                   # its CPU second may take longer
                if "SIGXCPU" in server.logs():
                    break
                time.sleep(0.1)
            time.sleep(0.5)                                                        # past the restart backoff
            # 64 MB more a call against a 128 MB limit: at the limit the host is replaced between calls, so every
            # call is answered.
            got = [say(server.url, "m", "crash:leak") for _ in range(5)]
            assert got == [["crashy: crash:leak"]] * 5, got
            time.sleep(1.0)
        logs = server.logs()
        assert "crashy: second complete returned PARLEY_E_ALREADY_COMPLETED" in logs, logs[-2000:]
        assert "crashy: late complete returned PARLEY_E_EXPIRED" in logs
        assert "crashy: flood queued" in logs and "refused busy" in logs
        assert "crashy: cancel hook hangs" in logs
        assert "SIGXCPU" in logs
        assert "reached its memory limit (it uses" in logs and "finished its calls and exited" in logs, logs[-3000:]
        assert server.proc.pid == pid and server.proc.poll() is None
    finally:
        server.stop()


def test_processes_give_a_thread_unsafe_plugin_parallelism(tmp_path):
    server = start(config(build_crashy(tmp_path), extra="""    processes: 2
    config: {thread_safe: false}"""), workdir=str(tmp_path))
    try:
        results = {}

        def ask(who):
            results[who] = say(server.url, who, "crash:pid")

        threads = [threading.Thread(target=ask, args=(w,)) for w in ("p1", "p2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        pids = {results[w][0] for w in results}
        assert all(r[0].startswith("crashy: pid ") for r in results.values()), results
        assert len(pids) == 2, results     # two host processes served the two calls at once
        status = requests.get(server.url + "/admin/plugins", headers={"Authorization": "Bearer t0k"}, timeout=5)
        assert status.status_code == 403   # no api.token configured: refused
    finally:
        server.stop()


def hung_config(crashy, extra_agent="", extra=""):
    return f"""api:
  token: t0k
channels:
  rest:
agents:
  - name: mirror
    plugin: {MIRROR}
  - name: crashy
    plugin: {crashy}
    deadline: 1
    route: {{prefix: "crash"}}
{extra_agent}
store:
  type: memory
{extra}
"""


def admin_plugins(url):
    r = requests.get(url + "/admin/plugins", headers={"Authorization": "Bearer t0k"}, timeout=5)
    assert r.status_code == 200, r.text
    return {p["name"]: p for p in r.json()["plugins"]}


def test_in_process_a_hung_single_slot_answers_the_fallback_at_once(tmp_path):
    """A plugin that is not thread-safe and hangs once: later turns get the fallback at once (not at the deadline),
    the log says why, the health route and `parley plugins status` name it, other agents are answered."""
    server = start(hung_config(build_crashy(tmp_path), "    config: {thread_safe: false}"), workdir=str(tmp_path))
    try:
        assert say(server.url, "h", "crash:hang") == [FALLBACK]
        time.sleep(0.5)   # the call expires 250 ms after the agent's deadline: then its slot counts as hung
        started = time.monotonic()
        assert say(server.url, "h2", "crash: anyone?") == [FALLBACK]
        assert time.monotonic() - started < 0.5
        assert say(server.url, "x", "the mirror answers") == ["the mirror answers"]
        assert "all 1 slot(s) are held by handle() calls past their deadline (the plugin is not thread-safe" in server.logs()
        health = requests.get(server.url + "/health", timeout=5)
        assert health.status_code == 200 and health.json()["status"] == "degraded", health.text
        assert "crashy" in health.json()["plugins"] and health.json()["store"] == "ok"
        plugins = admin_plugins(server.url)
        assert plugins["crashy"]["hung"] == 1 and plugins["crashy"]["slots"] == 1 and plugins["crashy"]["refused"] >= 1
        assert plugins["crashy"]["status"] == "degraded" and plugins["mirror"]["status"] == "ok"
        assert plugins["mirror"]["calls"] >= 1 and plugins["mirror"]["latency_us"]["p50"] > 0
        cli = subprocess.run([PARLEY, "plugins", "status", "--url", server.url, "--token", "t0k"], capture_output=True, text=True, timeout=30)
        assert cli.returncode == 1, cli.stderr        # a degraded plugin: status 1
        assert "crashy" in cli.stdout and "degraded" in cli.stdout and "1/1" in cli.stdout, cli.stdout
    finally:
        server.proc.kill()


def test_in_process_hung_slots_are_bounded_and_others_keep_their_threads(tmp_path):
    """A thread-safe plugin with max_concurrent_calls 2 that hangs in every call holds at most 2 threads; then its
    calls are refused at once, and new conversations of other agents are always answered."""
    server = start(hung_config(build_crashy(tmp_path), "    max_concurrent_calls: 2", extra="""dispatcher:
  workers: 2
  max_threads: 8"""), workdir=str(tmp_path))
    try:
        with Chatter(server.url, n=10):
            hung = [threading.Thread(target=say, args=(server.url, f"h{i}", "crash:hang")) for i in range(2)]
            for t in hung:
                t.start()
            for t in hung:
                t.join()
            time.sleep(0.5)
            for i in range(10):
                assert say(server.url, f"more{i}", "crash:hang") == [FALLBACK]
            for i in range(10):
                assert say(server.url, f"new-{i}", f"new {i}") == [f"new {i}"]
        plugins = admin_plugins(server.url)
        assert plugins["crashy"]["hung"] == 2 and plugins["crashy"]["refused"] >= 10, plugins["crashy"]
    finally:
        server.proc.kill()


def test_an_isolated_formatter_formats_in_its_own_process(tmp_path):
    server = start(f"""api:
  token: t0k
channels:
  rest:
agents:
  - name: mirror
    plugin: {MIRROR}
formatters:
  - name: markdown
    plugin: {PLUGINS}/libmarkdown.so
    isolation: process
store:
  type: memory
""", workdir=str(tmp_path))
    try:
        assert say(server.url, "f", "**bold** move") == ["<b>bold</b> move"]
        plugins = admin_plugins(server.url)
        assert plugins["markdown"]["isolation"] == "process" and plugins["markdown"]["kind"] == "formatter"
        assert plugins["markdown"]["processes_running"] == 1 and plugins["markdown"]["calls"] >= 1
        assert "plugin markdown: host process started" in server.logs()
    finally:
        server.stop()


def test_a_rust_panic_in_an_isolated_agent_is_caught(tmp_path):
    rust = os.path.join(PLUGINS, "librustcalc.so")
    server = start(f"""api:
  token: t0k
channels:
  rest:
agents:
  - name: calc
    plugin: {rust}
    isolation: process
store:
  type: memory
""", workdir=str(tmp_path))
    try:
        assert say(server.url, "r", "/panic") == [FALLBACK]          # catch_unwind turns it into an error reply
        assert say(server.url, "r", "2 + 3") != [FALLBACK]
        plugins = admin_plugins(server.url)
        assert plugins["calc"]["crashes"] == 0 and plugins["calc"]["errors"] == 1, plugins["calc"]
    finally:
        server.stop()


def test_plugins_check_isolated_reports_a_crash_in_init(tmp_path):
    crashy = build_crashy(tmp_path)
    broken = build_crashy(tmp_path, "-DCRASH_IN_INIT", name="libcrashinit.so")
    run = subprocess.run([PARLEY, "plugins", "check", "--isolated", crashy, broken, MIRROR], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("ok ") and '"crashy"' in lines[0], lines
    assert lines[1].startswith("FAIL plugin " + broken) and "SIGSEGV" in lines[1] and "crashy: crashing in init" in lines[1], lines
    assert lines[2].startswith("ok ") and '"mirror"' in lines[2], lines


def test_a_reload_with_an_isolated_plugin_that_crashes_in_init_changes_nothing(tmp_path):
    crashy = build_crashy(tmp_path)
    broken = build_crashy(tmp_path, "-DCRASH_IN_INIT", name="libcrashinit.so")
    server = start(config(crashy) + "api:\n  token: t0k\n", workdir=str(tmp_path))
    try:
        assert say(server.url, "c", "crash one") == ["crashy: crash one"]
        with open(os.path.join(server.workdir, "parley.yml")) as f:
            text = f.read()
        with open(os.path.join(server.workdir, "parley.yml"), "w") as f:
            f.write(text.replace(crashy, broken))
        r = requests.post(server.url + "/admin/reload", headers={"Authorization": "Bearer t0k"}, timeout=30)
        assert r.status_code == 422 and "nothing changed" in r.json()["message"] and "SIGSEGV" in r.json()["message"], r.text
        assert say(server.url, "c", "crash two") == ["crashy: crash two"]
        assert say(server.url, "m", "mirror too") == ["mirror too"]
    finally:
        server.stop()


def test_an_isolated_agent_gets_the_tracker_events_it_asks_for(tmp_path):
    """The plugin cannot tell the difference: one that sets PARLEY_FLAG_NO_TRACKER_EVENTS gets `"events": []` in
    its host process as in process; one that does not gets the conversation's events."""
    crashy = build_crashy(tmp_path)
    server = start(f"""channels:
  rest:
agents:
  - name: lean
    plugin: {crashy}
    isolation: process
    config: {{tracker_events: false}}
  - name: full
    plugin: {crashy}
    isolation: process
    route: {{metadata: {{agent: full}}}}
store:
  type: memory
""", workdir=str(tmp_path))
    try:
        for _ in range(2):
            say(server.url, "a", "hello")
        assert say(server.url, "a", "crash:events") == ["crashy: events none"]
        r = requests.post(f"{server.url}/webhooks/rest/webhook", json={"sender": "b", "message": "hi", "metadata": {"agent": "full"}}, timeout=15)
        assert r.status_code == 200
        r = requests.post(f"{server.url}/webhooks/rest/webhook", json={"sender": "b", "message": "crash:events", "metadata": {"agent": "full"}}, timeout=15)
        assert [m.get("text") for m in r.json()] == ["crashy: events some"], r.text
    finally:
        server.stop()
