"""Black-box tests of the Rasa-compatible socketio channel (spec §2–§6, Pro behaviour of §8/§10) against a
real `parley serve` with the C mirror agent, using the python-socketio client and a raw polling client."""
import json
import re

import pytest
import requests

from conftest import mirror_config
from sio_helpers import Client, RawPolling

HEX32 = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def client(mirror_server):
    clients = []

    def make(**kw):
        c = Client(mirror_server.url, **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def test_health_routes(mirror_server):
    for path in ("/webhooks/socketio/", "/webhooks/socketio"):
        r = requests.get(mirror_server.url + path, timeout=5)
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        assert r.headers["content-type"].startswith("application/json")


def test_eio3_is_refused(mirror_server):
    r = requests.get(mirror_server.url + "/socket.io/?EIO=3&transport=polling", timeout=5)
    assert r.status_code == 400


# Session ids ---------------------------------------------------------------------------------------------

def test_new_session_ids(client):
    c = client()
    assert HEX32.match(c.request_session(None))
    assert HEX32.match(c.request_session(payload={}))
    assert HEX32.match(c.request_session(payload=(None,)))  # 42["session_request",null]


def test_provided_ids_are_echoed_unchanged(client):
    c = client()
    assert c.request_session("abc") == "abc"
    assert c.request_session("") == ""
    assert c.request_session(5) == 5
    assert c.request_session(True) is True
    assert c.request_session({"x": 1}) == {"x": 1}


def test_session_confirm_is_a_bare_id_on_the_wire(mirror_server):
    raw = RawPolling(mirror_server.url)
    raw.send("40")
    assert raw.receive()[0].startswith('40{"sid":"')
    raw.send('42["session_request",{"session_id":"abc"}]')
    assert raw.receive() == ['42["session_confirm","abc"]']
    raw.send('42["session_request",{"session_id":null}]')
    [packet] = raw.receive()
    assert re.match(r'^42\["session_confirm","[0-9a-f]{32}"\]$', packet), packet
    raw.send('42["user_uttered",{"message":"hi","session_id":"abc"}]')
    assert raw.receive() == ['42["bot_uttered",{"text":"hi"}]']


def test_invalid_session_requests_get_no_confirm(client):
    c = client()
    c.emit("session_request")            # no argument
    c.emit("session_request", "abc")     # not an object
    c.emit("session_request", [1, 2])
    # Handlers run in order: the first confirm is the valid request's.
    assert c.request_session("after") == "after"


# Persistence ---------------------------------------------------------------------------------------------

def test_reply_goes_to_the_session_room(client):
    c = client()
    sid = c.request_session("room-1")
    c.say("hello", sid)
    assert c.replies(1) == [{"text": "hello"}]


def test_message_without_valid_session_id_is_ignored(client):
    c = client()
    c.request_session("room-2")
    c.say("no session")
    c.say("empty", "")
    c.emit("user_uttered", {"message": "null", "session_id": None})
    c.say("valid", "room-2")
    assert c.replies(1) == [{"text": "valid"}]


def test_fan_out_to_every_socket_of_a_session_and_no_other(client):
    a, b, other = client(), client(), client()
    a.request_session("shared")
    b.request_session("shared")
    other.request_session("elsewhere")
    a.say("to everyone", "shared")
    assert a.replies(1) == [{"text": "to everyone"}]
    assert b.replies(1) == [{"text": "to everyone"}]
    other.say("mine", "elsewhere")
    assert other.replies(1) == [{"text": "mine"}]  # nothing from "shared" arrived before


def test_socket_not_in_the_room_gets_nothing(client):
    joined, outsider = client(), client()
    joined.request_session("watched")
    outsider.request_session("own")
    outsider.say("for watched", "watched")
    assert joined.replies(1) == [{"text": "for watched"}]
    outsider.say("for me", "own")
    assert outsider.replies(1) == [{"text": "for me"}]


def test_reconnect_continues_the_conversation(mirror_server, client):
    first = client()
    sid = first.request_session(None)
    first.say("before", sid)
    assert first.replies(1) == [{"text": "before"}]
    first.close()
    second = client()
    assert second.request_session(sid) == sid
    second.say("after", sid)
    assert second.replies(1) == [{"text": "after"}]
    messages = requests.get(f"{mirror_server.url}/conversations/{sid}/messages", timeout=5).json()["messages"]
    texts = [m.get("text") for m in messages]
    assert texts == ["before", "before", "after", "after"]


def test_persistence_off_uses_the_socket_id(server_factory):
    server = server_factory(mirror_config(persistence=False))
    c = Client(server.url)
    try:
        c.request_session("ignored-for-routing")
        c.say("/sender")
        assert c.replies(1) == [{"text": c.sid}]
    finally:
        c.close()


# Response types -------------------------------------------------------------------------------------------

RESPONSES = {
    "a\n\nb": [{"text": "a"}, {"text": "b"}],
    "l1\nl2": [{"text": "l1\nl2"}],
    "/buttons": [{"text": "pick one", "quick_replies": [
        {"content_type": "text", "title": "Yes", "payload": "/yes"},
        {"content_type": "text", "title": "No", "payload": "/no"}]}],
    "/quick": [{"text": "quick", "quick_replies": [{"content_type": "text", "title": "A", "payload": "/a"}]}],
    "/image": [{"attachment": {"type": "image", "payload": {"src": "https://example.com/cat.png"}}}],
    "/attachment": [{"attachment": {"type": "video", "payload": {"src": "https://example.com/v.mp4"}}}],
    "/elements": [{"attachment": {"type": "template", "payload": {"template_type": "generic",
                   "elements": {"title": "Card", "subtitle": "sub", "buttons": [{"title": "Go", "payload": "/go"}]}}}}],
    "/custom": [{"foo": "bar", "n": 1}],
    "/custom_data": [{"foo": "bar", "n": 1}],
    "/many": [{"text": str(i)} for i in range(1, 6)],
}


@pytest.mark.parametrize("text", list(RESPONSES))
def test_every_response_type(client, text):
    c = client()
    sid = c.request_session(None)
    c.say(text, sid)
    assert c.replies(len(RESPONSES[text])) == RESPONSES[text]
    c.say("/sender", sid)  # nothing more was sent in between
    assert c.replies(1) == [{"text": sid}]


def test_unknown_command_and_blank_message_send_nothing(client):
    c = client()
    sid = c.request_session(None)
    c.say("/nothing", sid)
    c.say("   ", sid)
    c.emit("user_uttered", {"session_id": sid})
    c.say("end", sid)
    assert c.replies(1) == [{"text": "end"}]


def test_slow_turns_keep_order(client):
    c = client()
    sid = c.request_session(None)
    c.say("/slow", sid)
    c.say("fast", sid)
    assert c.replies(2) == [{"text": "slow done"}, {"text": "fast"}]


# Metadata -------------------------------------------------------------------------------------------------

def test_metadata_forms(client):
    c = client()
    sid = c.request_session(None)
    c.say("/metadata", sid, metadata={"lang": "de"})
    assert c.replies(1) == [{"metadata": {"lang": "de"}}]
    c.say("/metadata", sid, metadata=json.dumps({"lang": "fr"}))
    assert c.replies(1) == [{"metadata": {"lang": "fr"}}]
    c.say("/metadata_data", sid)
    assert c.replies(1) == [{"metadata": {}}]
    c.say("/metadata", sid, metadata="{not json")     # ignored
    c.say("/metadata", sid, metadata="[1]")           # ignored: not an object
    c.say("/metadata", sid, customData={"x": 1})      # not the metadata key: ignored key
    assert c.replies(1) == [{"metadata": {}}]


def test_custom_metadata_key(server_factory):
    server = server_factory(mirror_config(extra_socketio="metadata_key: customData"))
    c = Client(server.url)
    try:
        sid = c.request_session(None)
        c.say("/metadata", sid, customData={"lang": "nl"}, metadata={"ignored": True})
        assert c.replies(1) == [{"metadata": {"lang": "nl"}}]
    finally:
        c.close()


# Malformed events ------------------------------------------------------------------------------------------

def test_malformed_user_uttered_is_ignored_and_the_socket_stays(client):
    c = client()
    sid = c.request_session(None)
    for bad in ("text", [1, 2], 42, None):
        c.emit("user_uttered", bad)
    c.emit("user_uttered")
    c.say(5, sid)                      # message not a string
    c.emit("some_other_event", {"message": "x"})
    c.say("still here", sid)
    assert c.replies(1) == [{"text": "still here"}]


def test_protocol_violation_closes_only_that_session(mirror_server, client):
    raw = RawPolling(mirror_server.url)
    raw.send("40")
    raw.receive()
    raw.send("4abc")  # not a Socket.IO packet
    good = client()
    sid = good.request_session(None)
    good.say("fine", sid)
    assert good.replies(1) == [{"text": "fine"}]


# Namespaces and transports ---------------------------------------------------------------------------------

def test_namespace_handlers_rooms_and_emits(server_factory):
    server = server_factory(mirror_config(extra_socketio="namespace: /chat"))
    a = Client(server.url, namespace="/chat")
    b = Client(server.url, namespace="/chat")
    try:
        sid = a.request_session("ns-session")
        b.request_session("ns-session")
        a.say("in namespace", sid)
        assert a.replies(1) == [{"text": "in namespace"}]
        assert b.replies(1) == [{"text": "in namespace"}]
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("transports", [["polling"], ["websocket"], ["polling", "websocket"]])
def test_transports(client, transports):
    c = client(transports=transports)
    sid = c.request_session(None)
    c.say("/many", sid)
    assert c.replies(5) == [{"text": str(i)} for i in range(1, 6)]


# REST then socket -----------------------------------------------------------------------------------------

def test_rest_then_socket_with_the_same_id(mirror_server, client):
    r = requests.post(mirror_server.url + "/webhooks/rest/webhook", json={"sender": "cross-1", "message": "via rest"}, timeout=5)
    assert r.json() == [{"recipient_id": "cross-1", "text": "via rest"}]
    c = client()
    assert c.request_session("cross-1") == "cross-1"
    c.say("via socket", "cross-1")
    assert c.replies(1) == [{"text": "via socket"}]
    messages = requests.get(f"{mirror_server.url}/conversations/cross-1/messages", timeout=5).json()["messages"]
    assert [m.get("text") for m in messages] == ["via rest", "via rest", "via socket", "via socket"]
    tracker = requests.get(f"{mirror_server.url}/conversations/cross-1/tracker", timeout=5).json()
    assert tracker["sender_id"] == "cross-1"


# CORS -----------------------------------------------------------------------------------------------------

def test_no_origin_check_and_no_cors_headers_by_default(mirror_server):
    r = requests.get(mirror_server.url + "/socket.io/?EIO=4&transport=polling", headers={"Origin": "https://elsewhere.example"}, timeout=5)
    assert r.status_code == 200 and r.text.startswith("0{")
    assert "access-control-allow-origin" not in {k.lower() for k in r.headers}


def test_cors_origins_star(server_factory):
    server = server_factory(mirror_config(extra_socketio='cors_origins: "*"'))
    r = requests.get(server.url + "/socket.io/?EIO=4&transport=polling", headers={"Origin": "https://widget.example"}, timeout=5)
    assert r.status_code == 200
    assert r.headers.get("Access-Control-Allow-Origin") in ("*", "https://widget.example")


def test_custom_path_and_event_names(server_factory):
    server = server_factory(mirror_config(extra_socketio="socketio_path: /chat/io\nuser_message_evt: user_says\nbot_message_evt: bot_says"))
    c = Client(server.url, socketio_path="chat/io", bot_event="bot_says")
    try:
        sid = c.request_session(None)
        c.say("ignored: default event name", sid)
        c.say("custom names", sid, event="user_says")
        name, args = c.next()
        assert (name, args) == ("bot_says", [{"text": "custom names"}])
    finally:
        c.close()
    assert requests.get(server.url + "/socket.io/?EIO=4&transport=polling", timeout=5).status_code == 404
