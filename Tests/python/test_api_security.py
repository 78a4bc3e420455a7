"""The conversation API and the REST channel against strangers: tokens, session-bound JWTs, no open history."""
import time

import jwt as pyjwt
import requests

from conftest import MIRROR, run_to_exit

SECRET = "socket-secret"


def token(sub, secret=SECRET):
    return pyjwt.encode({"sub": sub, "exp": int(time.time()) + 600}, secret, algorithm="HS256")


def bearer(t):
    return {"Authorization": f"Bearer {t}"}


def config(api="", rest=""):
    return f"""
channels:
  socketio:
    session_persistence: true
    jwt_key: {SECRET}
    jwt_session_claim: sub
  rest:
{rest}
agents:
  - name: mirror
    plugin: {MIRROR}
store:
  type: sqlite
  path: parley.db
{api}
"""


def say(server, sender, headers=None):
    return requests.post(server.url + "/webhooks/rest/webhook", json={"sender": sender, "message": "hi"},
                         headers=headers or {}, timeout=10)


def test_rest_cannot_write_into_a_session_bound_to_a_token(server_factory):
    # Before: with jwt_session_claim on the socket channel, anyone could still write into any conversation over REST.
    server = server_factory(config())
    assert say(server, "alice").status_code == 401
    assert say(server, "alice", bearer("not.a.jwt")).status_code == 401
    assert say(server, "alice", bearer(token("alice", secret="other"))).status_code == 401
    r = say(server, "alice", bearer(token("bob")))
    assert r.status_code == 403 and "bob" in r.json()["message"]
    r = say(server, "alice", bearer(token("alice")))
    assert r.status_code == 200 and r.json()


def test_rest_has_its_own_jwt_keys(server_factory):
    server = server_factory(config(rest="    jwt_key: rest-secret"))
    assert say(server, "carol", bearer(token("carol"))).status_code == 401          # the socket key is not the REST key
    assert say(server, "carol", bearer(token("carol", secret="rest-secret"))).status_code == 200


def test_history_with_the_sessions_own_jwt(server_factory):
    server = server_factory(config(api="api:\n  token: admin-token\n  session_token: true"))
    assert say(server, "alice", bearer(token("alice"))).status_code == 200
    url = server.url + "/conversations/alice/messages"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers=bearer(token("bob")), timeout=10).status_code == 403
    assert requests.get(url, headers=bearer(token("alice", secret="forged")), timeout=10).status_code == 403
    own = requests.get(url, headers=bearer(token("alice")), timeout=10)
    assert own.status_code == 200, own.text
    assert requests.get(server.url + "/conversations/alice/tracker", headers=bearer(token("alice")), timeout=10).status_code == 200
    assert requests.get(url, headers=bearer("admin-token"), timeout=10).status_code == 200
    # A session token never sends messages over HTTP (that needs the API token).
    r = requests.post(url, json=[{"text": "x"}], headers=bearer(token("alice")), timeout=10)
    assert r.status_code == 403


def test_history_needs_the_api_token_when_one_is_set(server_factory):
    server = server_factory(config(api="api:\n  token: admin-token"))
    assert say(server, "dave", bearer(token("dave"))).status_code == 200
    url = server.url + "/conversations/dave/messages"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers=bearer("wrong-token"), timeout=10).status_code == 403
    assert requests.get(url, headers=bearer(token("dave")), timeout=10).status_code == 403   # session tokens are off
    assert requests.get(url, headers=bearer("admin-token"), timeout=10).status_code == 200


def test_loopback_server_without_token_says_so(server_factory):
    server = server_factory(config())
    assert "conversation API on without a token" in server.logs()
    assert "loopback" in server.logs()


def test_session_token_needs_the_socket_channels_session_claim():
    code, out = run_to_exit(f"""
channels:
  socketio:
  rest:
agents:
  - name: mirror
    plugin: {MIRROR}
api:
  session_token: true
""", args=["--port", "0"])
    assert code == 78
    assert "api.session_token" in out and "jwt_session_claim" in out
