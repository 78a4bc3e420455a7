"""`adapter: redis` with real redis-server processes and two Parley nodes on one PostgreSQL: replies reach the
sockets of a session on the other node exactly once, a publisher speaking socket.io-redis-adapter's format (as
Node's @socket.io/redis-emitter does) reaches Parley rooms, a wrong message is dropped and counted, and a Redis
outage is logged once, survived and recovered from."""
import json
import os
import queue
import random
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

import msgpack
import pytest
import redis
import requests

from conftest import mirror_config
from sio_helpers import Client, drain

PG = os.environ.get("PARLEY_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(PG is None or not os.environ.get("PARLEY_TEST_REDIS_URL"),
                                reason="needs PostgreSQL and Redis (make test starts both)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server of this test's own, so that it can be stopped and started again on the same port."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="parley-redis-")
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                      "--dir", self.dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port).ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"


def cluster_config(redis_url, schema):
    parts = urllib.parse.urlsplit(PG)
    store = f"""store:
  type: postgres
  url: {PG}
  schema: {schema}
  pool_size: 4
"""
    return mirror_config().replace("store:\n  type: sqlite\n  path: parley.db\n", store) + f"""
adapter:
  type: redis
  url: {redis_url}
"""


@pytest.fixture
def own_redis():
    server = RedisServer()
    yield server
    if server.proc.poll() is None:
        server.stop()


def two_nodes(server_factory, redis_url, unlimited=False):
    schema = f"r_{random.getrandbits(40):x}"
    config = cluster_config(redis_url, schema)
    if unlimited:
        config = config.replace("session_persistence: true", "session_persistence: true\n    rate_limit:\n      messages_per_second: 0", 1)
    a = server_factory(config)
    b = server_factory(config)
    # Both nodes subscribed: wait until each has a subscriber on the pattern.
    deadline = time.monotonic() + 10
    port = int(urllib.parse.urlsplit(redis_url).port)
    wait_for_subscribers(port, 2, deadline)
    return a, b


def wait_for_subscribers(port, count, deadline):
    """Until `count` connections are pattern-subscribed (PUBSUB NUMPAT counts patterns, not subscribers)."""
    while sum(1 for c in redis.Redis(port=port).client_list() if int(c.get("psub", 0)) > 0) < count:
        assert time.monotonic() < deadline, "the nodes did not subscribe"
        time.sleep(0.05)


def test_a_reply_reaches_the_session_on_the_other_node_once(server_factory):
    a, b = two_nodes(server_factory, os.environ["PARLEY_TEST_REDIS_URL"])
    tab1, tab2 = Client(a.url), Client(b.url)
    try:
        session = tab1.request_session()
        assert tab2.request_session(session) == session
        tab1.say("hello from tab one", session_id=session)
        got1, got2 = drain(tab1), drain(tab2)
        assert [e[1][0]["text"] for e in got1] == ["hello from tab one"], got1
        assert [e[1][0]["text"] for e in got2] == ["hello from tab one"], got2
        # Each node announces itself with a key that expires unless renewed.
        r = redis.Redis(port=int(urllib.parse.urlsplit(os.environ["PARLEY_TEST_REDIS_URL"]).port))
        members = list(r.scan_iter(match="socket.io-node#*"))
        assert len(members) >= 2, members
        assert all(0 < r.pttl(key) <= 15000 for key in members)
        tab2.say("and from tab two", session_id=session)
        assert [e[1][0]["text"] for e in drain(tab1)] == ["and from tab two"]
        assert [e[1][0]["text"] for e in drain(tab2)] == ["and from tab two"]
    finally:
        tab1.close()
        tab2.close()


def test_an_emitter_in_socket_io_redis_format_reaches_parley_rooms(server_factory):
    url = os.environ["PARLEY_TEST_REDIS_URL"]
    a, b = two_nodes(server_factory, url)
    tab1, tab2, other = Client(a.url), Client(b.url), Client(b.url)
    try:
        session = tab1.request_session()
        tab2.request_session(session)
        other.request_session()
        r = redis.Redis(port=int(urllib.parse.urlsplit(url).port))
        # What @socket.io/redis-emitter publishes for io.to(session).emit("bot_uttered", {...}).
        packet = {"type": 2, "data": ["bot_uttered", {"text": "from an emitter"}], "nsp": "/"}
        opts = {"rooms": [session], "except": [], "flags": {}}
        receivers = r.publish(f"socket.io#/#{session}#", msgpack.packb(["emitter", packet, opts]))
        assert receivers == 2
        assert [e[1][0]["text"] for e in drain(tab1)] == ["from an emitter"]
        assert [e[1][0]["text"] for e in drain(tab2)] == ["from an emitter"]
        assert drain(other, 0.3) == []
        # A message in another format is dropped and counted; the nodes go on.
        r.publish("socket.io#/#", b"\xc1not msgpack")
        r.publish("socket.io#/#", msgpack.packb({"not": "an array"}))
        time.sleep(0.3)
        metrics = requests.get(a.url + "/metrics", timeout=5).text
        dropped = [line for line in metrics.splitlines() if line.startswith("parley_redis_messages_dropped_total")]
        assert dropped and float(dropped[0].split()[-1]) == 2, dropped
        tab1.say("still here", session_id=session)
        assert [e[1][0]["text"] for e in drain(tab2)] == ["still here"]
        assert "not in socket.io's adapter format" in a.logs()
    finally:
        for c in (tab1, tab2, other):
            c.close()


def test_a_redis_outage_is_logged_survived_and_recovered(server_factory, own_redis):
    a, b = two_nodes(server_factory, own_redis.url)
    tab1, tab2 = Client(a.url), Client(b.url)
    try:
        session = tab1.request_session()
        tab2.request_session(session)
        own_redis.stop()
        time.sleep(0.5)
        # Local delivery goes on; the other node's socket misses what is said during the outage.
        tab1.say("during the outage", session_id=session)
        assert [e[1][0]["text"] for e in drain(tab1)] == ["during the outage"]
        assert drain(tab2, 0.3) == []
        log = a.logs()
        assert log.count("is unreachable") == 1, log
        # /health names the problem but stays 200: the node still serves its sockets and stores every turn.
        health = requests.get(a.url + "/health", timeout=5)
        assert health.status_code == 200 and "unreachable" in health.json()["adapter"], health.text
        own_redis.start()
        deadline = time.monotonic() + 15
        while "connected again" not in a.logs() or "connected again" not in b.logs():
            assert time.monotonic() < deadline, a.logs()
            time.sleep(0.1)
        wait_for_subscribers(own_redis.port, 2, time.monotonic() + 10)
        assert requests.get(a.url + "/health", timeout=5).json()["adapter"] == "ok"
        tab1.say("after the outage", session_id=session)
        assert [e[1][0]["text"] for e in drain(tab2)] == ["after the outage"]
        # The history (PostgreSQL) kept what the other node's socket missed.
        history = requests.get(f"{b.url}/conversations/{session}/tracker", timeout=10).json()
        assert "during the outage" in [e.get("text") for e in history["events"] if e["event"] == "user"]
    finally:
        tab1.close()
        tab2.close()


def test_two_tabs_on_two_nodes_sending_at_once_keep_the_conversation_in_order(server_factory):
    import threading

    a, b = two_nodes(server_factory, os.environ["PARLEY_TEST_REDIS_URL"])
    tab1, tab2 = Client(a.url), Client(b.url)
    try:
        session = tab1.request_session()
        tab2.request_session(session)
        errors = []

        def chat(client, prefix):
            try:
                for k in range(8):
                    text = f"{prefix}{k}"
                    client.say(text, session_id=session)
                    deadline = time.monotonic() + 20
                    while True:   # both tabs get every reply; wait for this one
                        name, args = client.next(timeout=max(0.1, deadline - time.monotonic()))
                        if args and args[0].get("text") == text:
                            break
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=chat, args=(tab1, "a")), threading.Thread(target=chat, args=(tab2, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        if errors:
            open("/tmp/twotabs.log", "w").write(a.logs() + "\n=====\n" + b.logs())
        assert not errors, errors
        history = requests.get(f"{a.url}/conversations/{session}/tracker", timeout=10).json()["events"]
        said = [e for e in history if e["event"] in ("user", "bot")]
        # Every message once, each turn whole (user then its reply), each tab's messages in its order.
        assert len(said) == 32, [(e["event"], e.get("text")) for e in said]
        for i in range(0, 32, 2):
            assert said[i]["event"] == "user" and said[i + 1]["event"] == "bot" and said[i]["text"] == said[i + 1]["text"], said[i:i + 2]
        users = [e["text"] for e in said if e["event"] == "user"]
        assert [t for t in users if t[0] == "a"] == [f"a{k}" for k in range(8)]
        assert [t for t in users if t[0] == "b"] == [f"b{k}" for k in range(8)]
        retries = 0
        for node in (a, b):
            for line in requests.get(node.url + "/metrics", timeout=5).text.splitlines():
                if line.startswith("parley_turn_conflict_retries_total"):
                    retries += float(line.split()[-1])
        print(f"turns run again after a conflict: {retries:.0f}")
    finally:
        tab1.close()
        tab2.close()


def test_redis_unreachable_or_refusing_at_startup_stops_the_node_with_one_line():
    from conftest import run_to_exit

    schema = f"r_{random.getrandbits(40):x}"
    closed = free_port()
    code, out = run_to_exit(cluster_config(f"redis://127.0.0.1:{closed}", schema))
    assert code != 0 and f"Redis at 127.0.0.1:{closed} is unreachable" in out and "adapter.url" in out, out
    # A Redis that wants a password this node does not have.
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--requirepass", "s3cret"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        code, out = run_to_exit(cluster_config(f"redis://127.0.0.1:{port}", schema))
        assert code != 0 and "refused the connection" in out and "NOAUTH" in out, out
        code, out = run_to_exit(cluster_config(f"redis://:wrong@127.0.0.1:{port}", schema))
        assert code != 0 and "refused the connection" in out, out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_proactive_message_posted_to_one_node_reaches_the_socket_on_the_other(server_factory):
    schema = f"r_{random.getrandbits(40):x}"
    config = cluster_config(os.environ["PARLEY_TEST_REDIS_URL"], schema) + "api:\n  token: proactive-token\n"
    a = server_factory(config)
    b = server_factory(config)
    wait_for_subscribers(int(urllib.parse.urlsplit(os.environ["PARLEY_TEST_REDIS_URL"]).port), 2, time.monotonic() + 10)
    tab = Client(a.url)
    try:
        session = tab.request_session()
        tab.say("hello", session_id=session)
        assert [e[1][0]["text"] for e in drain(tab)] == ["hello"]
        # Node b has no socket of this session; it records the message and the adapter delivers it on node a.
        r = requests.post(f"{b.url}/conversations/{session}/messages", headers={"Authorization": "Bearer proactive-token"},
                          json=[{"text": "Your order shipped"}], timeout=10)
        assert r.status_code == 202, r.text
        assert [e[1][0]["text"] for e in drain(tab)] == ["Your order shipped"]
    finally:
        tab.close()


def test_redis_restarted_under_load(server_factory, own_redis):
    """Eight clients on each node chat without pause while redis-server is stopped and started again: every
    message gets its reply from its own node throughout, nothing fails, and fan-out resumes afterwards."""
    import threading

    # As fast as replies come: without the per-socket rate limit (20/s by default).
    a, b = two_nodes(server_factory, own_redis.url, unlimited=True)
    stop = threading.Event()
    results = {"replies": 0, "errors": []}
    lock = threading.Lock()

    def chatter(url, n):
        client = Client(url)
        try:
            session = client.request_session()
            k = 0
            while not stop.is_set():
                text = f"load {n}-{k}"
                client.say(text, session_id=session)
                got = client.replies(1)[0]["text"]
                assert got == text, (got, text)
                k += 1
                with lock:
                    results["replies"] += 1
        except Exception as e:  # noqa: BLE001 - reported below
            with lock:
                results["errors"].append(repr(e))
        finally:
            client.close()

    threads = [threading.Thread(target=chatter, args=(node.url, i)) for i, node in enumerate([a, b] * 8)]
    for t in threads:
        t.start()
    time.sleep(1)
    before = results["replies"]
    own_redis.stop()
    time.sleep(2)
    during = results["replies"] - before
    own_redis.start()
    deadline = time.monotonic() + 15
    while "connected again" not in a.logs() or "connected again" not in b.logs():
        assert time.monotonic() < deadline, a.logs()[-2000:]
        time.sleep(0.1)
    time.sleep(1)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not results["errors"], results["errors"][:3]
    assert during > 50, during          # the nodes kept answering while Redis was down
    assert a.logs().count("is unreachable") == 1 and b.logs().count("is unreachable") == 1
    print(f"replies: {results['replies']} in all, {during} while Redis was down")
    # Fan-out works again.
    wait_for_subscribers(own_redis.port, 2, time.monotonic() + 10)
    tab1, tab2 = Client(a.url), Client(b.url)
    try:
        session = tab1.request_session()
        tab2.request_session(session)
        tab1.say("after the restart", session_id=session)
        assert [e[1][0]["text"] for e in drain(tab2)] == ["after the restart"]
    finally:
        tab1.close()
        tab2.close()


def test_room_membership_queries_span_the_nodes_and_speak_socket_io_redis_adapter_requests(server_factory):
    """GET /conversations/{id}/connections counts the sockets of a session on every node; a third peer speaking
    socket.io-redis-adapter's request/response protocol (as a Node server would) is asked and answered too."""
    url = os.environ["PARLEY_TEST_REDIS_URL"]
    port = int(urllib.parse.urlsplit(url).port)
    schema = f"r_{random.getrandbits(40):x}"
    config = cluster_config(url, schema).replace("  url: redis", "  request_timeout: 1\n  url: redis")
    a, b = server_factory(config), server_factory(config)
    r = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while r.pubsub_numsub("socket.io-request#/#")[0][1] < 2:
        assert time.monotonic() < deadline, "the nodes did not subscribe the request channel"
        time.sleep(0.05)
    tab1, tab2, other = Client(a.url), Client(b.url), Client(b.url)
    peer = r.pubsub()
    stop = threading.Event()
    answering = threading.Event()
    answering.set()
    answers = queue.Queue()
    try:
        session = tab1.request_session()
        tab2.request_session(session)
        other_session = other.request_session()
        got = requests.get(f"{a.url}/conversations/{session}/connections", timeout=5).json()
        assert got == {"conversation_id": session, "connected": 2, "sockets": sorted([tab1.sid, tab2.sid])}, got
        assert requests.get(f"{b.url}/conversations/{other_session}/connections", timeout=5).json()["sockets"] == [other.sid]
        assert requests.get(f"{a.url}/conversations/nobody/connections", timeout=5).json()["connected"] == 0

        # A Node peer: subscribed like socket.io-redis-adapter (so NUMSUB counts it), answering in its JSON.
        peer.subscribe("socket.io-request#/#", "socket.io-response#/#", "socket.io-response#/#peer01#")

        def serve():
            while not stop.is_set():
                message = peer.get_message(timeout=0.1)
                if not message or message["type"] != "message":
                    continue
                channel = message["channel"].decode()
                if channel.startswith("socket.io-response#"):
                    answers.put(json.loads(message["data"]))
                    continue
                data = message["data"]
                request = json.loads(data) if data[:1] == b"{" else msgpack.unpackb(data)
                if request.get("uid") == "peer01" or not answering.is_set():
                    continue
                if request["type"] == 5:  # REMOTE_FETCH
                    mine = [{"id": "peer-socket", "handshake": {}, "rooms": ["peer-socket", session], "data": {}}]
                    sockets = mine if session in request["opts"]["rooms"] else []
                    r.publish(f"socket.io-response#/#{request['uid']}#", json.dumps({"requestId": request["requestId"], "sockets": sockets}))
                elif request["type"] == 1:  # ALL_ROOMS
                    r.publish("socket.io-response#/#", json.dumps({"requestId": request["requestId"], "rooms": ["peer-room"]}))

        worker = threading.Thread(target=serve, daemon=True)
        worker.start()
        deadline = time.monotonic() + 10
        while r.pubsub_numsub("socket.io-request#/#")[0][1] < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        got = requests.get(f"{b.url}/conversations/{session}/connections", timeout=5).json()
        assert got["sockets"] == sorted([tab1.sid, tab2.sid, "peer-socket"]), got

        # The peer asks the Parley nodes, in JSON (fetchSockets) and in MessagePack (allRooms).
        r.publish("socket.io-request#/#", json.dumps(
            {"uid": "peer01", "requestId": "q1", "type": 5, "opts": {"rooms": [session], "except": []}}))
        r.publish("socket.io-request#/#", msgpack.packb({"uid": "peer01", "requestId": "q2", "type": 1}))
        fetched, rooms = set(), set()
        for _ in range(4):
            answer = answers.get(timeout=5)
            if answer["requestId"] == "q1":
                fetched |= {s["id"] for s in answer["sockets"]}
                assert all(session in s["rooms"] for s in answer["sockets"])
            else:
                rooms |= set(answer["rooms"])
        assert fetched == {tab1.sid, tab2.sid}
        assert {session, other_session, tab1.sid, other.sid} <= rooms

        # disconnectSockets from the peer (REMOTE_DISCONNECT with opts) reaches the socket on its node.
        r.publish("socket.io-request#/#", json.dumps(
            {"uid": "peer01", "type": 4, "opts": {"rooms": [other_session], "except": []}, "close": False}))
        deadline = time.monotonic() + 5
        while other.sio.connected and other.sio.namespaces:
            assert time.monotonic() < deadline, "the socket was not disconnected"
            time.sleep(0.05)

        # A peer that stops answering: the query fails after adapter.request_timeout with a 503 that says why.
        answering.clear()
        started = time.monotonic()
        reply = requests.get(f"{a.url}/conversations/{session}/connections", timeout=10)
        assert reply.status_code == 503, reply.text
        assert "only 1 of 2 other nodes answered" in reply.json()["message"], reply.text
        assert 0.9 < time.monotonic() - started < 5
        # The node keeps serving.
        tab1.say("still answering", session_id=session)
        assert [e[1][0]["text"] for e in drain(tab1)] == ["still answering"]
    finally:
        stop.set()
        for c in (tab1, tab2, other):
            c.close()
        peer.close()


def test_a_client_whose_node_is_gone_resumes_on_another_node_from_the_store(server_factory):
    """Numbered messages and replay across nodes: the client drops off node A while a slow agent answers there,
    reconnects to node B with resume_from and gets the missed reply (from PostgreSQL), then live messages from
    both nodes in order, each once."""
    a, b = two_nodes(server_factory, os.environ["PARLEY_TEST_REDIS_URL"], unlimited=True)
    c = Client(a.url)
    assert c.request_session(payload={"session_id": "traveller", "parley": {"resume_from": 0}}) == "traveller"
    c.say("hello", session_id="traveller")
    first = drain(c)
    assert [(e[1][0]["parley"]["seq"], e[1][0]["text"]) for e in first] == [(1, "hello")]
    c.say("/slow", session_id="traveller")
    time.sleep(0.2)
    c.close()
    time.sleep(1.3)
    back = Client(b.url)
    other_tab = Client(a.url)
    try:
        assert back.request_session(payload={"session_id": "traveller", "parley": {"resume_from": 1}}) == "traveller"
        assert [(e[1][0]["parley"]["seq"], e[1][0]["text"]) for e in drain(back)] == [(2, "slow done")]
        other_tab.request_session("traveller")
        # Live from the other node (not only through a gap read: nothing else follows it).
        other_tab.say("from node A", session_id="traveller")
        assert [(e[1][0]["parley"]["seq"], e[1][0]["text"]) for e in drain(back)] == [(3, "from node A")]
        other_tab.say("again from A", session_id="traveller")
        back.say("from node B", session_id="traveller")
        got = [(e[1][0]["parley"]["seq"], e[1][0]["text"]) for e in drain(back, 1.5)]
        assert [seq for seq, _ in got] == [4, 5] and {t for _, t in got} == {"again from A", "from node B"}, got
    finally:
        back.close()
        other_tab.close()
