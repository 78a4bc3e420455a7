"""The chat page at /chat in a real browser (headless Chromium from Debian, driven over the DevTools protocol):
send a message and see the reply, click a button, reload and see the history."""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest
import requests
import websocket

from conftest import MIRROR, mirror_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="parley-chromium-")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + 30
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            assert time.monotonic() < deadline, "chromium did not start"
            time.sleep(0.1)
        port = int(open(port_file).read().split()[0])
        pages = [t for t in requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json() if t["type"] == "page"]
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=30)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                assert "error" not in reply, reply
                return reply.get("result", {})

    def js(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.js(expression):
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}; page text: {self.js('document.body.innerText')}")

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.kill()
            self.proc.wait(timeout=10)
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
def browser():
    if not CHROMIUM:
        pytest.skip("chromium is not installed (scripts/deps.sh test installs Debian's chromium)")
    b = Browser()
    yield b
    b.close()


def chat_config():
    return mirror_config(persistence=True).replace("store:", "server:\n  chat_page: true\nstore:", 1)


def bubbles(cls):
    return f"Array.from(document.querySelectorAll('.msg.{cls}')).map(e => e.textContent)"


def test_chat_in_a_browser(server_factory, browser):
    server = server_factory(chat_config())
    browser.call("Page.enable")
    browser.call("Page.navigate", url=server.url + "/chat")
    browser.wait_for("document.getElementById('status').textContent.startsWith('connected')")
    assert "websocket" in browser.js("document.getElementById('status').textContent")
    # Type and send a message: the mirror answers it.
    browser.js("document.getElementById('text').value = 'hello from chromium'; document.getElementById('form').requestSubmit(); true")
    browser.wait_for(f"{bubbles('bot')}.includes('hello from chromium')")
    # Buttons: the mirror's /buttons answer has two; clicking one sends its payload.
    browser.js("document.getElementById('text').value = '/buttons'; document.getElementById('form').requestSubmit(); true")
    browser.wait_for("document.querySelectorAll('.buttons button').length === 2")
    shot = browser.call("Page.captureScreenshot", format="png")["data"]
    with open(os.path.join(tempfile.gettempdir(), "parley-chat-page.png"), "wb") as f:
        f.write(base64.b64decode(shot))
    browser.js("Array.from(document.querySelectorAll('.buttons button')).find(b => b.textContent === 'Yes').click(); true")
    browser.wait_for(f"{bubbles('user')}.includes('Yes')")
    session = browser.js("localStorage.getItem('parley_session')")
    deadline = time.monotonic() + 10
    while True:
        texts = [m.get("text") for m in requests.get(f"{server.url}/conversations/{session}/messages", timeout=10).json()["messages"]]
        if "/yes" in texts:
            break
        assert time.monotonic() < deadline, texts
        time.sleep(0.2)
    # Reload: the same session continues and the history is shown.
    browser.call("Page.reload")
    browser.wait_for("document.getElementById('status').textContent.startsWith('connected')")
    browser.wait_for(f"{bubbles('user')}.includes('hello from chromium') && {bubbles('bot')}.includes('hello from chromium')")
    assert browser.js("localStorage.getItem('parley_session')") == session
    browser.js("document.getElementById('text').value = 'after reload'; document.getElementById('form').requestSubmit(); true")
    browser.wait_for(f"{bubbles('bot')}.includes('after reload')")


def test_chat_over_long_polling(server_factory, browser):
    server = server_factory(chat_config())
    browser.call("Page.navigate", url=server.url + "/chat?transport=polling")
    browser.wait_for("document.getElementById('status').textContent === 'connected (polling)'")
    browser.js("document.getElementById('text').value = 'over polling'; document.getElementById('form').requestSubmit(); true")
    browser.wait_for(f"{bubbles('bot')}.includes('over polling')")


def test_the_chat_page_is_off_by_default(server_factory):
    server = server_factory(mirror_config())
    assert requests.get(server.url + "/chat", timeout=10).status_code == 404


def test_pull_the_cable_of_a_browser_reading_a_streamed_answer_and_read_every_word(server_factory, browser):
    """The chat page with the Rust agent streaming word by word, typing on: the connection drops mid-stream and
    comes back; the page shows the whole answer once, then the conversation goes on."""
    rust = os.path.join(os.path.dirname(MIRROR), "librustcalc.so")
    config = f"""server:
  chat_page: true
channels:
  socketio:
    session_persistence: true
    typing:
      on: {{event: typing_on}}
      off: {{event: typing_off}}
dispatcher:
  typing_delay: 0
agents:
  - name: rustcalc
    plugin: {rust}
store:
  type: sqlite
  path: parley.db
"""
    server = server_factory(config)
    answer = "Let me work that out. 2 * (3 + 4) comes to 14, step by step from the inside out."
    browser.call("Page.navigate", url=server.url + "/chat")
    browser.wait_for("document.getElementById('status').textContent.startsWith('connected')")
    browser.js("document.getElementById('text').value = '1 + 1'; document.getElementById('form').requestSubmit(); true")
    browser.wait_for(f"{bubbles('bot')}.includes('= 2')")
    browser.js("document.getElementById('text').value = 'explain 2 * (3 + 4)'; document.getElementById('form').requestSubmit(); true")
    # A few words in, the cable is pulled.
    browser.wait_for(f"{bubbles('bot')}.some(t => t.startsWith('Let me work'))")
    browser.js("window.parleyDropConnection(); true")
    partial = browser.js(f"{bubbles('bot')}.slice(-1)[0]")
    assert partial.startswith("Let me") and partial != answer, partial
    # Back: every word, once, then the final message in the same bubble.
    browser.wait_for(f"{bubbles('bot')}.includes({json.dumps(answer)})", timeout=20)
    assert browser.js(bubbles("bot")) == ["= 2", answer]
    assert browser.js("document.querySelector('.typing') === null")
    browser.js("document.getElementById('text').value = 'ans * 2'; document.getElementById('form').requestSubmit(); true")
    browser.wait_for(f"{bubbles('bot')}.includes('= 4')")
