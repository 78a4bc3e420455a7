"""One deadline per turn, owned by the dispatcher: a plugin that blocks inside handle() gets the fallback at its
agent deadline, not at the (longer) turn deadline, and the conversation goes on."""
import time

import requests

from conftest import MIRROR


def blocking_config(agent_deadline, turn_deadline=10):
    return f"""channels:
  rest:
agents:
  - name: mirror
    plugin: {MIRROR}
    deadline: {agent_deadline}
dispatcher:
  turn_deadline: {turn_deadline}
store:
  type: memory
"""


def say(server, sender, text):
    r = requests.post(server.url + "/webhooks/rest/webhook", json={"sender": sender, "message": text}, timeout=30)
    assert r.status_code == 200, r.text
    return [m.get("text") for m in r.json()]


def test_a_blocked_plugin_gets_the_fallback_at_its_agent_deadline(server_factory):
    server = server_factory(blocking_config(agent_deadline=0.5))
    started = time.monotonic()
    # The mirror plugin blocks in handle() for 3 s on "/block" (Plugins/mirror-c).
    texts = say(server, "blocked", "/block")
    waited = time.monotonic() - started
    assert len(texts) == 1 and texts[0] and texts[0] != "block done", texts
    # Well before the 3 s block ends and the 10 s turn deadline: the agent's 0.5 s deadline decided.
    assert waited < 2.5, f"the fallback came after {waited:.2f} s"
    # Other conversations are not held up while the call blocks its thread.
    assert say(server, "someone-else", "hi") == ["hi"]
    assert time.monotonic() - started < 2.5
    # The plugin still holds this conversation (calls stay serialised per conversation) until the blocked call
    # returns; after that the conversation goes on, answered by the agent.
    while time.monotonic() - started < 3.5:
        time.sleep(0.1)
    assert say(server, "blocked", "still there?") == ["still there?"]


def test_the_turn_deadline_bounds_an_agent_with_a_longer_deadline(server_factory):
    server = server_factory(blocking_config(agent_deadline=20, turn_deadline=0.5))
    started = time.monotonic()
    texts = say(server, "blocked2", "/block")
    assert time.monotonic() - started < 2.5
    assert texts and texts[0] != "block done"
