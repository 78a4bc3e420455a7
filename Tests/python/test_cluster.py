"""The shipped 3-node cluster (examples/cluster/: n1-n3.yml, nginx-sid.conf, nginx-hash.conf) for real: three
`parley serve` on one PostgreSQL and one Redis behind Debian's nginx. Polling clients (every request of a
session must reach the node that holds it) and WebSocket clients talk through nginx; a node is killed with
SIGKILL mid-conversation and the client goes on through nginx on another node with nothing lost."""
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import requests

from conftest import MIRROR, ROOT, free_port
from sio_helpers import Client

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
PG = os.environ.get("PARLEY_TEST_POSTGRES_URL")
REDIS = os.environ.get("PARLEY_TEST_REDIS_URL")
pytestmark = pytest.mark.skipif(not (PG and REDIS and NGINX), reason="needs PostgreSQL, Redis and nginx (make test provides them)")
CLUSTER = os.path.join(ROOT, "examples", "cluster")


def node_config(n, schema):
    """examples/cluster/nN.yml with this test's PostgreSQL, Redis, schema and plugin path."""
    with open(os.path.join(CLUSTER, f"n{n}.yml")) as f:
        text = f.read()
    text = re.sub(r"url: postgres://\S+", f"url: {PG}", text)
    text = re.sub(r"url: redis://\S+", f"url: {REDIS}", text)
    text = text.replace("schema: parley", f"schema: {schema}").replace("../../build/plugins/libmirror.so", MIRROR)
    return text


class Front:
    def __init__(self, conf_name, nodes):
        self.dir = tempfile.mkdtemp(prefix="parley-nginx-")
        self.port = free_port()
        with open(os.path.join(CLUSTER, conf_name)) as f:
            conf = f.read()
        for i, node in enumerate(nodes, start=1):
            conf = conf.replace(f"127.0.0.1:510{i};", f"127.0.0.1:{node.port};")
        conf = conf.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{self.port};").replace("/tmp/parley-nginx", self.dir)
        path = os.path.join(self.dir, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen([NGINX, "-c", path, "-p", self.dir], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while True:
            try:
                requests.get(self.url + "/health", timeout=1)
                return
            except requests.RequestException:
                assert self.proc.poll() is None, self.proc.stderr.read().decode()
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    skip = 0

    def lines_with(self, status):
        with open(os.path.join(self.dir, "access.log")) as f:
            return [line for line in f if "/socket.io/" in line and f'" {status} ' in line]

    def mark_closed(self):
        """Later counts leave out what was logged so far (a closed client's last poll)."""
        with open(os.path.join(self.dir, "access.log")) as f:
            self.skip = sum(1 for _ in f)

    def status_counts(self):
        """HTTP status codes nginx answered for Socket.IO requests (since the last mark_closed)."""
        counts = {}
        with open(os.path.join(self.dir, "access.log")) as f:
            for n, line in enumerate(f):
                if n < self.skip:
                    continue
                if "/socket.io/" in line:
                    m = re.search(r'" (\d{3}) ', line)
                    if m:
                        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
        return counts

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def cluster(server_factory):
    schema = f"c_{random.getrandbits(40):x}"
    nodes = [server_factory(node_config(n, schema)) for n in (1, 2, 3)]
    fronts = []

    def front(conf_name):
        f = Front(conf_name, nodes)
        fronts.append(f)
        return f

    yield nodes, front
    for f in fronts:
        f.stop()


def converse(client, session, texts):
    for text in texts:
        client.say(text, session_id=session)
        assert client.replies(1)[0]["text"] == text


def test_polling_clients_through_the_sid_routing_front(cluster):
    nodes, front = cluster
    f = front("nginx-sid.conf")
    seen_nodes = set()
    for i in range(6):
        client = Client(f.url, transports=["polling"])
        try:
            sid = client.sio.eio.sid
            assert re.match(r"^n[123]\.", sid), sid
            seen_nodes.add(sid.split(".")[0])
            session = client.request_session()
            converse(client, session, [f"poll {i}-{k}" for k in range(3)])
            # No 400 "unknown sid" while the session lives: every poll reached its node. (After a disconnect the
            # client's last pending GET may get one; that is the protocol, not routing.)
            counts = f.status_counts()
            assert set(counts) <= {"200"}, (counts, f.lines_with(400))
        finally:
            client.close()
            time.sleep(0.2)
            f.mark_closed()
    assert len(seen_nodes) >= 2, seen_nodes      # handshakes are spread over the nodes


def test_websocket_clients_and_the_address_hash_front(cluster):
    nodes, front = cluster
    f = front("nginx-hash.conf")
    for transports in (["polling"], ["websocket"], None):
        client = Client(f.url, transports=transports)
        try:
            session = client.request_session()
            converse(client, session, ["one", "two"])
            assert set(f.status_counts()) <= {"200", "101"}, (f.status_counts(), f.lines_with(400))
        finally:
            client.close()
            time.sleep(0.2)
            f.mark_closed()


def test_a_node_killed_mid_conversation_loses_nothing(cluster):
    nodes, front = cluster
    f = front("nginx-sid.conf")
    client = Client(f.url, transports=["websocket"])
    session = client.request_session()
    said = [f"before {k}" for k in range(4)]
    converse(client, session, said)
    node = int(client.sio.eio.sid.split(".")[0][1:])
    nodes[node - 1].proc.send_signal(signal.SIGKILL)
    nodes[node - 1].proc.wait(timeout=10)
    client.close()
    # The widget reconnects through nginx (another node), asks for its session, and goes on.
    again = Client(f.url, transports=["websocket"])
    try:
        assert again.sio.eio.sid.split(".")[0] != f"n{node}"
        assert again.request_session(session) == session
        converse(again, session, ["after 0", "after 1"])
        history = requests.get(f"{f.url}/conversations/{session}/tracker", timeout=10).json()
        users = [e["text"] for e in history["events"] if e["event"] == "user"]
        assert users == said + ["after 0", "after 1"], users          # each message that got a reply, exactly once
        bots = [e["text"] for e in history["events"] if e["event"] == "bot"]
        assert bots == users
    finally:
        again.close()


def test_a_browser_chats_through_the_cluster_front_over_long_polling(cluster):
    from test_chat_page import CHROMIUM, Browser, bubbles

    if not CHROMIUM:
        pytest.skip("chromium is not installed (scripts/deps.sh test installs Debian's chromium)")
    nodes, front = cluster
    f = front("nginx-sid.conf")
    browser = Browser()
    try:
        # The page comes from any node; its Engine.IO session lives on one node and every poll must reach it.
        browser.call("Page.navigate", url=f.url + "/chat?transport=polling")
        browser.wait_for("document.getElementById('status').textContent === 'connected (polling)'")
        session = browser.js("localStorage.getItem('parley_session')")
        # A python-socketio client of the same session, connected to a node of nginx's choosing.
        other = Client(f.url, transports=["websocket"])
        try:
            assert other.request_session(session) == session
            browser.js("document.getElementById('text').value = 'from the browser'; document.getElementById('form').requestSubmit(); true")
            browser.wait_for(f"{bubbles('bot')}.includes('from the browser')")
            assert [e[1][0]["text"] for e in [other.next(timeout=10)]] == ["from the browser"]
            other.say("from python", session_id=session)
            browser.wait_for(f"{bubbles('bot')}.includes('from python')")
        finally:
            other.close()
        counts = f.status_counts()
        assert set(counts) <= {"200", "101"}, (counts, f.lines_with(400))
        # Reload: a new Engine.IO session (maybe on another node) shows the history from PostgreSQL.
        browser.call("Page.reload")
        browser.wait_for("document.getElementById('status').textContent === 'connected (polling)'")
        browser.wait_for(f"{bubbles('user')}.includes('from the browser') && {bubbles('bot')}.includes('from python')")
    finally:
        browser.close()
