"""Hot reload (issue 15): `parley reload`, SIGHUP and POST /admin/reload swap agents and formatters while the
server runs; sockets stay connected (the same socket sees the new formatter), a broken plugin path changes nothing
and says why, and a reload under load costs no error and no dropped socket."""
import json
import os
import shutil
import signal
import subprocess
import threading
import time

from conftest import MIRROR, PARLEY, PLUGINS, start
from sio_helpers import Client

MARKDOWN = os.path.join(PLUGINS, "libmarkdown.so")


def config(port_free_formatter=None, agent_plugin=MIRROR):
    formatters = f"""formatters:
  - name: markdown
    plugin: {port_free_formatter}
""" if port_free_formatter else ""
    return f"""channels:
  socketio:
    session_persistence: true
    rate_limit:
      messages_per_second: 0
  rest:
api:
  token: reload-secret
agents:
  - name: mirror
    plugin: {agent_plugin}
{formatters}store:
  type: sqlite
  path: parley.db
"""


def reload_cli(server):
    p = subprocess.run([PARLEY, "reload", "--url", server.url, "--token", "reload-secret"], capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout + p.stderr


def reply(client, session, text):
    client.say(text, session_id=session)
    return client.replies(1)[0]


def test_swap_the_markdown_formatter_while_a_socket_stays_connected(tmp_path):
    workdir = str(tmp_path)
    server = start(config(), workdir=workdir)
    c = Client(server.url)
    disconnected = []
    c.sio.on("disconnect", lambda *a: disconnected.append(a), namespace="/")
    try:
        session = c.request_session()
        sid = c.sid
        assert reply(c, session, "**hi**") == {"text": "**hi**"}
        # A new build of the formatter, installed at a new path, and the configuration pointing at it.
        build = os.path.join(workdir, "libmarkdown-2.so")
        shutil.copy(MARKDOWN, build)
        with open(os.path.join(workdir, "parley.yml"), "w") as f:
            f.write(config(build))
        code, out = reload_cli(server)
        assert code == 0 and "reloaded: agents mirror; formatters markdown" in out, out
        assert reply(c, session, "**hi**") == {"text": "<b>hi</b>"}
        # A broken path: nothing changes, and the reason names the file.
        with open(os.path.join(workdir, "parley.yml"), "w") as f:
            f.write(config(os.path.join(workdir, "missing.so")))
        code, out = reload_cli(server)
        assert code == 1 and "nothing changed" in out and "missing.so" in out, out
        assert reply(c, session, "**still**") == {"text": "<b>still</b>"}
        # SIGHUP with the formatter removed.
        with open(os.path.join(workdir, "parley.yml"), "w") as f:
            f.write(config())
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reloaded: agents mirror; formatters " not in server.logs().split("formatters markdown")[-1]:
            assert time.monotonic() < deadline, server.logs()[-1500:]
            time.sleep(0.05)
        assert reply(c, session, "**plain**") == {"text": "**plain**"}
        assert c.sid == sid and disconnected == []
    finally:
        c.close()
        server.stop()


def test_a_reload_under_load_loses_nothing(tmp_path):
    workdir = str(tmp_path)
    server = start(config(), workdir=workdir)
    port = server.url.rsplit(":", 1)[1]
    try:
        load = subprocess.Popen([PARLEY, "loadtest", "rtt", "-p", port, "-c", "100", "-d", "4", "-w", "1"], stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)
        for i in range(4):
            with open(os.path.join(workdir, "parley.yml"), "w") as f:
                f.write(config(MARKDOWN if i % 2 == 0 else None))
            code, out = reload_cli(server)
            assert code == 0, out
            time.sleep(0.4)
        result = json.loads(load.communicate(timeout=60)[0])
        assert result["errors"] == 0 and result["completed"] > 100, result
        assert result["established"] == 100  # S2: 100 clients
    finally:
        server.stop()
