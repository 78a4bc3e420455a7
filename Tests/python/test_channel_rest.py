"""Rasa's REST channel against a real `parley serve` with the C mirror agent."""
import requests

from conftest import mirror_config


def post(server, body, raw=None):
    if raw is not None:
        return requests.post(server.url + "/webhooks/rest/webhook", data=raw, headers={"Content-Type": "application/json"}, timeout=10)
    return requests.post(server.url + "/webhooks/rest/webhook", json=body, timeout=10)


def test_health(mirror_server):
    for path in ("/webhooks/rest/", "/webhooks/rest"):
        r = requests.get(mirror_server.url + path, timeout=5)
        assert r.status_code == 200
        assert r.json() == {"status": "ok"}


def test_text_and_paragraphs(mirror_server):
    r = post(mirror_server, {"sender": "rest-1", "message": "hello"})
    assert r.status_code == 200
    assert r.json() == [{"recipient_id": "rest-1", "text": "hello"}]
    r = post(mirror_server, {"sender": "rest-1", "message": "a\n\nb"})
    assert r.json() == [{"recipient_id": "rest-1", "text": "a"}, {"recipient_id": "rest-1", "text": "b"}]


def test_every_mirror_response_type(mirror_server):
    s = "rest-types"
    cases = {
        "/buttons": [{"recipient_id": s, "text": "pick one", "buttons": [{"title": "Yes", "payload": "/yes"}, {"title": "No", "payload": "/no"}]}],
        "/quick": [{"recipient_id": s, "text": "quick", "buttons": [{"title": "A", "payload": "/a"}]}],
        "/image": [{"recipient_id": s, "image": "https://example.com/cat.png"}],
        "/attachment": [{"recipient_id": s, "attachment": {"type": "video", "payload": {"src": "https://example.com/v.mp4"}}}],
        "/elements": [{"recipient_id": s, "text": "Card : sub", "buttons": [{"title": "Go", "payload": "/go"}]}],
        "/custom": [{"recipient_id": s, "custom": {"foo": "bar", "n": 1}}],
        "/custom_data": [{"recipient_id": s, "custom": {"data": {"foo": "bar", "n": 1}}}],
        "/sender": [{"recipient_id": s, "text": s}],
        "/many": [{"recipient_id": s, "text": str(i)} for i in range(1, 6)],
        "/nothing-here": [],
    }
    for text, expected in cases.items():
        r = post(mirror_server, {"sender": s, "message": text})
        assert r.status_code == 200, text
        assert r.json() == expected, text


def test_metadata_reaches_the_agent(mirror_server):
    r = post(mirror_server, {"sender": "rest-meta", "message": "/metadata", "metadata": {"lang": "de", "n": [1, 2]}})
    assert r.json() == [{"recipient_id": "rest-meta", "custom": {"metadata": {"lang": "de", "n": [1, 2]}}}]


def test_bad_requests(mirror_server):
    cases = [
        (None, "{not json", "not valid JSON"),
        (None, "[1]", "must be a JSON object"),
        ({"message": "hi"}, None, 'missing "sender"'),
        ({"sender": "", "message": "hi"}, None, '"sender" must be a non-empty string'),
        ({"sender": "u"}, None, 'missing "message"'),
        ({"sender": "u", "message": 3}, None, '"message" must be a string'),
        ({"sender": "u", "message": "hi", "metadata": "x"}, None, '"metadata" must be a JSON object'),
    ]
    for body, raw, fragment in cases:
        r = post(mirror_server, body, raw)
        assert r.status_code == 400, (body, raw)
        j = r.json()
        assert j["status"] == "failure" and j["code"] == 400
        assert fragment in j["message"], j


def test_oversized_body(server_factory):
    server = server_factory(mirror_config(channels="channels:\n  rest:\n    max_body_size: 100\n"))
    r = post(server, {"sender": "u", "message": "x" * 500})
    assert r.status_code == 413
    assert "larger than 100 bytes" in r.json()["message"]
    # The server keeps serving.
    assert post(server, {"sender": "u", "message": "ok"}).json() == [{"recipient_id": "u", "text": "ok"}]


def test_conversation_survives_restart(server_factory):
    cfg = mirror_config()
    first = server_factory(cfg)
    post(first, {"sender": "restart-1", "message": "before"})
    assert first.stop() == 0
    second = server_factory(cfg, workdir=first.workdir)
    post(second, {"sender": "restart-1", "message": "after"})
    r = requests.get(second.url + "/conversations/restart-1/messages", timeout=5)
    assert r.status_code == 200
    texts = [m.get("text") for m in r.json()["messages"]] if isinstance(r.json(), dict) else [m.get("text") for m in r.json()]
    assert texts.count("before") == 2 and texts.count("after") == 2


def test_conversation_api_token(server_factory):
    server = server_factory(mirror_config(extra="api:\n  token: s3cret\n"))
    post(server, {"sender": "api-1", "message": "hi"})
    base = server.url + "/conversations/api-1"
    assert requests.get(base + "/tracker", timeout=5).status_code == 401
    assert requests.get(base + "/tracker?token=wrong", timeout=5).status_code == 403
    r = requests.get(base + "/tracker", headers={"Authorization": "Bearer s3cret"}, timeout=5)
    assert r.status_code == 200 and r.json()["sender_id"] == "api-1"
    r = requests.get(base + "/messages?token=s3cret&limit=1", timeout=5)
    assert r.status_code == 200 and [m["text"] for m in r.json()["messages"]] == ["hi"]
    assert requests.get(server.url + "/conversations/nobody/messages?token=s3cret", timeout=5).status_code == 404
    assert requests.get(base + "/messages?token=s3cret&limit=x", timeout=5).status_code == 400
