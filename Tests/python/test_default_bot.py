"""Black-box tests of the default bot (`make run`): the repository's parley.yml (Swift assistant + Markdown
formatter + the example native actions of Plugins/actions-c) served on a free port with a temp database,
driven over the python-socketio client and the REST channel as a user would."""
import os
import re

import pytest
import requests

from conftest import PLUGINS, ROOT, start
from sio_helpers import Client


def default_config():
    """parley.yml with the plugin paths pointing at the built plugins; the database stays relative (temp folder)."""
    with open(os.path.join(ROOT, "parley.yml"), encoding="utf-8") as f:
        text = f.read()
    assert "build/plugins/" in text
    return text.replace("build/plugins/", PLUGINS.rstrip("/") + "/")


@pytest.fixture(scope="module")
def bot():
    for name in ("libParleyAssistant.so", "libmarkdown.so", "libparley_actions.so", "actions.yml"):
        if not os.path.exists(os.path.join(PLUGINS, name)):
            pytest.fail(f"{PLUGINS}/{name} is missing: run `make plugins` first")
    server = start(default_config())
    yield server
    server.stop()


@pytest.fixture
def chat(bot):
    clients = []

    def make():
        c = Client(bot.url)
        # session_persistence is on in parley.yml: every message names its session, as Rasa's widget does.
        c.session_id = c.request_session(None)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def ask(client, text, n=1):
    """Sends `text`; returns the `bot_uttered` payloads of the next n messages, in order."""
    client.say(text, session_id=client.session_id)
    return client.replies(n)


def texts(client, text, n=1):
    return [m.get("text") for m in ask(client, text, n)]


def titles(message):
    return [b["title"] for b in message.get("quick_replies", [])]


def test_name_memory(chat):
    c = chat()
    [unknown] = ask(c, "what is my name?")
    assert unknown["text"] == "You haven't told me your name yet. What is it?"
    assert titles(unknown) == ["My name is Ada"]
    [learned] = ask(c, "my name is Ada")
    assert learned["text"] == "Nice to meet you, Ada! I'll remember that."
    assert titles(learned) == ["What is my name?", "What do you know about me?"]
    assert texts(c, "I live in paris") == ["Paris, noted."]
    assert texts(c, "what is my name?") == ["Your name is Ada."]
    assert texts(c, "what do you know about me?") == ["I know that your name is Ada, you live in Paris."]


@pytest.mark.parametrize(
    "text, reply",
    [
        ("tip 42.50 at 15%", "Tip: 6.38"),
        ("tip 40 15", "Tip: 6.00"),
        ("Tip $80 at 20 percent", "Tip: 16.00"),
        ("tip 40", "Tip: 6.00"),  # 15% by default
        ("convert 5 km to mi", "5 km = 3.11 mi"),
        ("convert 10 miles to km", "10 mi = 16.09 km"),
        ("3 ft in m", "3 ft = 0.91 m"),
        ("2^10", "1024"),
        ("2 to the power of 10", "1024"),
        ("9 ** 0.5", "3"),
        ("is 2024 a leap year?", "Leap year: true"),
        ("Was 1900 a leap year?", "Leap year: false"),
    ],
)
def test_each_action_answers_exactly_once(chat, text, reply):
    c = chat()
    assert texts(c, text) == [reply]
    # The next turn's reply comes next: the action sent nothing more than its one message.
    assert texts(c, "what is my name?") == ["You haven't told me your name yet. What is it?"]


def test_greet_sends_two_messages_in_order(chat):
    c = chat()
    [ask_name] = ask(c, "greet me")
    assert ask_name["text"] == "I'd love to greet you, but I don't know your name yet. Tell me: my name is Ada"
    assert titles(ask_name) == ["My name is Ada"]
    ask(c, "my name is Grace")
    assert texts(c, "greet me", 2) == ["Hello, Grace!", "Ask me for a tip or a unit conversion."]
    assert texts(c, "what is my name?") == ["Your name is Grace."]


def test_two_conversations_get_their_own_greeting(chat):
    a, b = chat(), chat()
    ask(a, "my name is Ada")
    ask(b, "call me Linus")
    a.say("greet me", session_id=a.session_id)
    b.say("greet me", session_id=b.session_id)
    assert [m["text"] for m in a.replies(2)] == ["Hello, Ada!", "Ask me for a tip or a unit conversion."]
    assert [m["text"] for m in b.replies(2)] == ["Hello, Linus!", "Ask me for a tip or a unit conversion."]


@pytest.mark.parametrize(
    "text, reply",
    [
        ("tip abc", "Tell me the bill and a whole percent, for example: tip 42.50 at 15%"),
        ("tip 40 at 15.5%", "Tell me the bill and a whole percent, for example: tip 42.50 at 15%"),
        ("tip", "Tell me the bill and a whole percent, for example: tip 42.50 at 15%"),
        ("convert 5 parsecs to mi", "I convert distances between km, m, mi and ft, for example: convert 5 km to mi"),
        ("is it a leap year?", "Which year? For example: is 2024 a leap year?"),
        ("2^x", "Give me two numbers, for example: 2^10 or 2 to the power of 10"),
    ],
)
def test_bad_input_gets_usage_and_the_bot_goes_on(chat, text, reply):
    c = chat()
    [usage] = ask(c, text)
    assert usage["text"] == reply
    assert usage["quick_replies"], usage
    assert texts(c, "tip 40 15") == ["Tip: 6.00"]


def test_help_lists_the_actions_with_buttons(chat):
    c = chat()
    [help_] = ask(c, "help")
    # The Markdown formatter turns the newlines into <br> for the web widget.
    assert help_["text"].count("<br>") == 2, help_
    assert "tip 42.50 at 15%" in help_["text"] and "greet me" in help_["text"]
    assert titles(help_) == [
        "Tip 42.50 at 15%", "Convert 5 km to mi", "2^10", "Is 2024 a leap year?", "Greet me", "What do you know about me?",
    ]
    # Every button payload works as typed.
    payloads = {b["title"]: b["payload"] for b in help_["quick_replies"]}
    assert texts(c, payloads["2^10"]) == ["1024"]
    assert texts(c, payloads["Convert 5 km to mi"]) == ["5 km = 3.11 mi"]


def test_unknown_text_points_to_help(chat):
    c = chat()
    [m] = ask(c, "the weather is nice")
    assert m["text"].endswith("or say help.")
    assert titles(m) == ["What do you know about me?", "Help"]


def test_rest_channel_runs_the_actions_too(bot):
    sender = "rest-" + os.urandom(4).hex()

    def post(text):
        r = requests.post(bot.url + "/webhooks/rest/webhook", json={"sender": sender, "message": text}, timeout=10)
        assert r.status_code == 200, r.text
        return [m.get("text") for m in r.json()]

    assert post("tip 42.50 at 15%") == ["Tip: 6.38"]
    assert post("my name is Ada") == ["Nice to meet you, Ada! I'll remember that."]
    assert post("greet me") == ["Hello, Ada!", "Ask me for a tip or a unit conversion."]
    # REST gets the Markdown as written (the formatter is socketio-only in parley.yml).
    [help_text] = post("help")
    assert "\n" in help_text and "<br>" not in help_text


def test_no_action_failed_in_the_log(bot):
    """Every request above had valid arguments: no action fell back."""
    assert not re.search(r"action failed", bot.logs()), bot.logs()
