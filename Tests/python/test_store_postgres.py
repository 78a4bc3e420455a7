"""`store: postgres` against the real PostgreSQL that scripts/with-services.sh starts for `make test`: history in
PostgreSQL across restarts and across two nodes, ${ENV} for the password, clear startup failures, and a server
restart under a running node (turns fail visibly while it is down, then recover; nothing half-written)."""
import os
import random
import subprocess
import time
import urllib.parse

import pytest
import requests

from conftest import mirror_config, run_to_exit
from sio_helpers import Client

URL = os.environ.get("PARLEY_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(URL is None, reason="needs PARLEY_TEST_POSTGRES_URL (make test starts PostgreSQL)")


def postgres_config(schema=None, url=None, pool_size=4):
    """The mirror agent on PostgreSQL; the password comes from the environment (${PARLEY_PG_PASSWORD})."""
    parts = urllib.parse.urlsplit(url or URL)
    templated = f"postgres://{parts.username}:${{PARLEY_PG_PASSWORD}}@{parts.hostname}:{parts.port}{parts.path}"
    schema = schema or f"t_{random.getrandbits(40):x}"
    store = f"""store:
  type: postgres
  url: {templated}
  schema: {schema}
  pool_size: {pool_size}
"""
    return mirror_config().replace("store:\n  type: sqlite\n  path: parley.db\n", store), schema


def env():
    return {"PARLEY_PG_PASSWORD": urllib.parse.urlsplit(URL).password}


def say(server, sender, text):
    r = requests.post(server.url + "/webhooks/rest/webhook", json={"sender": sender, "message": text}, timeout=15)
    return r.status_code, (r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text)


def psql(sql):
    parts = urllib.parse.urlsplit(URL)
    bin_dir = os.environ.get("PARLEY_TEST_POSTGRES_BIN", "")
    out = subprocess.run(
        [os.path.join(bin_dir, "psql"), "-h", parts.hostname, "-p", str(parts.port), "-U", parts.username, "-d", parts.path.lstrip("/"),
         "-tAc", sql],
        capture_output=True, text=True, env={**os.environ, "PGPASSWORD": parts.password}, timeout=20)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_history_lives_in_postgres_across_restarts_and_nodes(server_factory):
    config, schema = postgres_config()
    first = server_factory(config, env=env())
    client = Client(first.url)
    session = client.request_session()
    client.say("hello from node one", session_id=session)
    assert client.replies(1)[0]["text"] == "hello from node one"
    client.close()
    # A second node on the same database continues the same conversation (same session id).
    second = server_factory(config, env=env())
    other = Client(second.url)
    assert other.request_session(session) == session
    other.say("and node two", session_id=session)
    assert other.replies(1)[0]["text"] == "and node two"
    other.close()
    first.stop()
    second.stop()
    rows = psql(f"SELECT seq, type FROM {schema}.events WHERE sender_id = '{session}' ORDER BY seq").splitlines()
    assert [r.split("|")[0] for r in rows] == [str(i) for i in range(1, len(rows) + 1)], rows
    assert [r.split("|")[1] for r in rows].count("user") == 2
    # Restarted, the node serves the history from PostgreSQL.
    third = server_factory(config, env=env())
    history = requests.get(f"{third.url}/conversations/{session}/tracker", timeout=10).json()
    texts = [e.get("text") for e in history["events"] if e["event"] == "user"]
    assert texts == ["hello from node one", "and node two"]


def test_startup_failures_name_the_server_and_exit_non_zero():
    config, _ = postgres_config()
    code, out = run_to_exit(config, env={"PARLEY_PG_PASSWORD": "wrong"})
    assert code != 0 and "password authentication failed" in out and "127.0.0.1" in out, out
    assert out.count("\n") < 20, out
    parts = urllib.parse.urlsplit(URL)
    closed, _ = postgres_config(url=f"postgres://{parts.username}:x@127.0.0.1:1/parley")
    code, out = run_to_exit(closed, env=env())
    assert code != 0 and "127.0.0.1:1/parley" in out and "check store.url" in out, out
    code, out = run_to_exit(mirror_config().replace("type: sqlite", "type: postgres"), env=env())
    assert code == 78 and "store.url" in out, out


def test_a_newer_schema_is_refused():
    config, schema = postgres_config()
    # A schema that a newer Parley migrated (version 7).
    psql(f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.schema_version (version integer NOT NULL, migrated_at timestamptz NOT NULL DEFAULT now());"
         f" INSERT INTO {schema}.schema_version (version) VALUES (7)")
    code, out = run_to_exit(config, env=env())
    assert code != 0 and "schema version 7" in out and "newer Parley" in out, out


def _pg_ctl(action):
    bin_dir = os.environ["PARLEY_TEST_POSTGRES_BIN"]
    data = os.environ["PARLEY_TEST_POSTGRES_DATA"]
    user = os.environ["PARLEY_TEST_POSTGRES_USER"]
    cmd = [os.path.join(bin_dir, "pg_ctl"), "-D", data, "-w", "-t", "30"]
    cmd += ["-m", "fast", "stop"] if action == "stop" else ["-l", os.path.join(os.path.dirname(data), "postgres.log"), "start"]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", user, "--"] + cmd
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def test_postgres_restart_under_a_running_node(server_factory):
    config, schema = postgres_config()
    server = server_factory(config, env=env())
    assert say(server, "pg", "before")[0] == 200
    assert requests.get(server.url + "/health", timeout=5).status_code == 200
    _pg_ctl("stop")
    try:
        status, body = say(server, "pg", "while down")
        # The turn is answered with the fallback or refused; it is never reported as done.
        assert status in (200, 503), (status, body)
        if status == 200:
            assert body and "went wrong" in body[0]["text"], body
        health = requests.get(server.url + "/health", timeout=10)
        assert health.status_code == 503, health.text
        assert "PostgreSQL" in health.json()["store"], health.text
    finally:
        _pg_ctl("start")
    deadline = time.monotonic() + 20
    while True:
        status, body = say(server, "pg", "after")
        if status == 200 and body and body[0]["text"] == "after":
            break
        assert time.monotonic() < deadline, (status, body)
        time.sleep(0.3)
    assert requests.get(server.url + "/health", timeout=5).status_code == 200
    users = psql(f"SELECT data::json->>'text' FROM {schema}.events WHERE sender_id = 'pg' AND type = 'user' ORDER BY seq").splitlines()
    assert users[0] == "before" and users[-1] == "after" and "while down" not in users, users
    # Every stored user message has its reply right after it: no half-written turn.
    kinds = psql(f"SELECT type FROM {schema}.events WHERE sender_id = 'pg' ORDER BY seq").splitlines()
    for i, kind in enumerate(kinds):
        if kind == "user":
            assert "bot" in kinds[i + 1:i + 4], kinds
