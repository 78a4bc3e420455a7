"""POST /conversations/{id}/messages: proactive messages from another system, recorded and delivered to every
socket of the conversation."""
import requests

from conftest import mirror_config
from sio_helpers import Client

TOKEN = "proactive-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def config(token=True):
    return mirror_config(persistence=True, extra=f"api:\n  token: {TOKEN}\n" if token else "")


def test_a_post_reaches_two_sockets_of_one_session_and_the_history(server_factory):
    server = server_factory(config())
    a, b = Client(server.url), Client(server.url)
    try:
        session = a.request_session(None)
        assert b.request_session(session) == session
        a.say("hello", session_id=session)
        assert a.replies(1) and b.replies(1)   # the mirror's answer reaches both sockets of the session
        r = requests.post(f"{server.url}/conversations/{session}/messages", headers=AUTH, timeout=10,
                          json=[{"text": "Your order shipped"}, {"text": "Pick one", "buttons": [{"title": "OK", "payload": "/ok"}]}])
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["conversation_id"] == session
        assert [e["event"] for e in body["events"]] == ["bot", "bot"]
        assert all("timestamp" in e for e in body["events"])
        for client in (a, b):
            first, second = client.replies(2)
            assert first == {"text": "Your order shipped"}
            assert second["text"] == "Pick one"
            assert second["quick_replies"] == [{"content_type": "text", "title": "OK", "payload": "/ok"}]
        history = requests.get(f"{server.url}/conversations/{session}/messages", headers=AUTH, timeout=10).json()
        texts = [m.get("text") for m in (history["messages"] if isinstance(history, dict) else history)]
        assert "Your order shipped" in texts and "Pick one" in texts
    finally:
        a.close()
        b.close()


def test_unknown_conversation_404_unless_create(server_factory):
    server = server_factory(config())
    url = f"{server.url}/conversations/new-user-1/messages"
    r = requests.post(url, headers=AUTH, json=[{"text": "hi"}], timeout=10)
    assert r.status_code == 404
    assert "create" in r.json()["message"]
    r = requests.post(url, headers=AUTH, json={"responses": [{"text": "Welcome!"}], "create": True}, timeout=10)
    assert r.status_code == 202, r.text
    assert [e["event"] for e in r.json()["events"]] == ["action", "session_started", "action", "bot"]
    # A socket that joins the session later sees the conversation continue; REST appends to it.
    r = requests.post(f"{server.url}/webhooks/rest/webhook", json={"sender": "new-user-1", "message": "thanks"}, timeout=10)
    assert r.status_code == 200
    tracker = requests.get(f"{server.url}/conversations/new-user-1/tracker?include_events=ALL", headers=AUTH, timeout=10).json()
    events = [e["event"] for e in tracker["events"]]
    assert events.count("session_started") == 1
    assert events.index("bot") < events.index("user")


def test_the_token_is_required_and_bodies_are_checked(server_factory):
    server = server_factory(config())
    requests.post(f"{server.url}/webhooks/rest/webhook", json={"sender": "u2", "message": "hi"}, timeout=10)
    url = f"{server.url}/conversations/u2/messages"
    assert requests.post(url, json=[{"text": "x"}], timeout=10).status_code == 401
    assert requests.post(url, json=[{"text": "x"}], headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 403
    for bad in (b"not json", b"[]", b'{"responses": "x"}', b"[1]", b'{"responses": [{"text": "x"}], "create": "yes"}'):
        r = requests.post(url, data=bad, headers=AUTH, timeout=10)
        assert r.status_code == 400, (bad, r.status_code, r.text)
        assert "responses" in r.json()["message"] or "create" in r.json()["message"]


def test_without_a_configured_token_the_endpoint_is_closed(server_factory):
    server = server_factory(config(token=False))
    requests.post(f"{server.url}/webhooks/rest/webhook", json={"sender": "u3", "message": "hi"}, timeout=10)
    r = requests.post(f"{server.url}/conversations/u3/messages", json=[{"text": "x"}], timeout=10)
    assert r.status_code == 403
    assert "api.token" in r.json()["message"]
