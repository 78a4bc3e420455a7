"""`parley shell` through a pseudo-terminal: type, read the bot, pick a button by number, resume with history."""
import os
import pty
import select
import subprocess
import time

from conftest import PARLEY, mirror_config


class Terminal:
    """`parley shell` on a pty: what a person at a terminal sees and types."""

    def __init__(self, *args):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([PARLEY, "shell", *args], stdin=slave, stdout=slave, stderr=slave, close_fds=True)
        os.close(slave)
        self.screen = ""

    def expect(self, text, timeout=15):
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{text!r} not shown; the screen:\n{self.screen}"
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    self.screen += os.read(self.master, 4096).decode(errors="replace")
                except OSError:
                    break
        assert text in self.screen, f"{text!r} not shown; the screen:\n{self.screen}"
        return self.screen

    def type(self, line):
        os.write(self.master, (line + "\n").encode())

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        os.close(self.master)


def test_chat_buttons_and_exit(server_factory):
    server = server_factory(mirror_config())
    t = Terminal("--url", server.url)
    try:
        t.expect("Your session:")
        session = t.screen.split("Your session: ")[1].split(".")[0]
        t.type("hello there")
        t.expect("Bot: hello there")
        t.type("/buttons")
        t.expect("pick one")
        t.expect("2: No")
        t.type("2")                        # the second button's payload, /no
        t.type("/sender")
        t.expect(f"Bot: {session}")        # the conversation is the shell's session
        t.type("/exit")
        assert t.proc.wait(timeout=10) == 0
    finally:
        t.close()
    # The button press was sent as its payload.
    import requests
    history = requests.get(f"{server.url}/conversations/{session}/tracker?include_events=ALL", timeout=10).json()
    assert "/no" in [e.get("text") for e in history["events"] if e["event"] == "user"]


def test_resume_prints_the_history(server_factory):
    server = server_factory(mirror_config())
    import requests
    # A conversation started over REST continues in the shell with its session id.
    requests.post(server.url + "/webhooks/rest/webhook", json={"sender": "resume-me", "message": "earlier words"}, timeout=10)
    t = Terminal("--url", server.url, "--session", "resume-me")
    try:
        t.expect("History of resume-me")
        t.expect("earlier words")
        t.expect("Your session: resume-me")
        t.type("later")
        t.expect("Bot: later")
    finally:
        t.close()


def test_no_server_says_what_to_do():
    p = subprocess.run([PARLEY, "shell", "--url", "http://127.0.0.1:9"], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert "parley serve" in (p.stdout + p.stderr)
