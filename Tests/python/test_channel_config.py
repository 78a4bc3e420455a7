"""Configuration mistakes stop `parley serve` with exit code 78 and one line naming file, key and fix;
the CLI itself and graceful shutdown."""
import os
import re
import signal
import subprocess

import requests

from conftest import MIRROR, PARLEY, mirror_config, run_to_exit


def test_version():
    out = subprocess.run([PARLEY, "version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith("parley ")


def test_wrong_type():
    code, out = run_to_exit(mirror_config(extra_socketio="ping_interval: fast"))
    assert code == 78, out
    # FILE:LINE:COL: key path: what was expected (the line of ping_interval in the generated file).
    assert re.search(r'parley\.yml:\d+:\d+: channels\.socketio\.ping_interval: expected a number of seconds, got "fast"', out), out


def test_unknown_key_with_suggestion():
    code, out = run_to_exit(mirror_config(extra_socketio="sesion_persistence: true"))
    assert code == 78, out
    assert re.search(r'parley\.yml:\d+:\d+: channels\.socketio\.sesion_persistence: unknown key; did you mean "session_persistence"\?', out), out


def test_missing_config_file():
    code, out = run_to_exit(None, args=["--config", "nope.yml"])
    assert code == 78 and "nope.yml: configuration file not found" in out


def test_invalid_yaml():
    code, out = run_to_exit("server: [\n")
    assert code == 78 and re.search(r"parley\.yml:2:1: invalid YAML", out), out


def test_missing_env_variable():
    env = {k: v for k, v in os.environ.items() if k != "PARLEY_TEST_UNSET_SECRET"}
    code, out = run_to_exit(mirror_config(extra_socketio='jwt_key: "${PARLEY_TEST_UNSET_SECRET}"'), env=env)
    assert code == 78 and "environment variable PARLEY_TEST_UNSET_SECRET is not set" in out


def test_no_agent():
    code, out = run_to_exit("channels:\n  rest:\n")
    assert code == 78 and "parley.yml: agents: at least one agent is required" in out


def test_bad_port_flag():
    code, out = run_to_exit(mirror_config(), args=["--port", "99999"])
    assert code == 78 and "--port: expected a TCP port number" in out


def test_missing_plugin_file():
    code, out = run_to_exit("agents:\n  - name: x\n    plugin: /nonexistent/libx.so\n", args=["--port", "0"])
    assert code == 70, out
    assert "/nonexistent/libx.so" in out


def test_bad_jwt_key():
    code, out = run_to_exit(mirror_config(extra_socketio="jwt_key: not-a-pem\njwt_method: RS256"), args=["--port", "0"])
    assert code == 70, out
    assert "channels.socketio.jwt_key" in out and "RS256" in out


def test_rasa_credentials_file(server_factory):
    creds = """
rest:
socketio:
  user_message_evt: user_uttered
  bot_message_evt: bot_uttered
  session_persistence: true
facebook:
  verify: x
"""
    agents = f"agents:\n  - name: mirror\n    plugin: {MIRROR}\nstore: {{type: memory}}\n"
    server = server_factory(agents, args=["--credentials", "credentials.yml"], files={"credentials.yml": creds})
    assert requests.get(server.url + "/webhooks/socketio/", timeout=5).json() == {"status": "ok"}
    r = requests.post(server.url + "/webhooks/rest/webhook", json={"sender": "c", "message": "hi"}, timeout=5)
    assert r.json() == [{"recipient_id": "c", "text": "hi"}]
    assert 'channel "facebook" is not supported by Parley and is ignored' in server.logs()


def test_json_logs(server_factory):
    server = server_factory(mirror_config(), args=["--log-format", "json", "--log-level", "debug"])
    requests.post(server.url + "/webhooks/rest/webhook", json={"sender": "j", "message": "hi"}, timeout=5)
    server.stop()
    import json
    lines = [l for l in server.logs().splitlines() if l.strip()]
    assert lines
    for line in lines:
        obj = json.loads(line)
        assert {"ts", "level", "logger", "message"} <= obj.keys()


def test_graceful_shutdown_on_sigterm_and_sigint(server_factory):
    for sig in (signal.SIGTERM, signal.SIGINT):
        server = server_factory(mirror_config())
        requests.post(server.url + "/webhooks/rest/webhook", json={"sender": "g", "message": "hi"}, timeout=5)
        assert server.stop(sig) == 0, server.logs()
        assert "stopped" in server.logs()


def test_thread_safe_override_and_routes(server_factory):
    cfg = mirror_config(channels="channels:\n  rest:\n").replace(
        "  - name: mirror\n", "  - name: mirror\n    thread_safe: false\n")
    cfg += f"""
formatters: []
"""
    server = server_factory(cfg)
    r = requests.post(server.url + "/webhooks/rest/webhook", json={"sender": "t", "message": "/many"}, timeout=10)
    assert [m["text"] for m in r.json()] == ["1", "2", "3", "4", "5"]


def test_route_with_two_conditions_is_refused():
    cfg = f"agents:\n  - name: a\n    plugin: {MIRROR}\n  - name: b\n    plugin: {MIRROR}\n    route: {{prefix: /x, channels: [rest]}}\n"
    code, out = run_to_exit(cfg, args=["--port", "0"])
    # A configuration mistake: refused before anything is loaded, with EX_CONFIG (78), the file and the key.
    assert code == 78 and "parley.yml: agents[1].route: give exactly one condition" in out, out


def test_port_in_use(server_factory):
    first = server_factory(mirror_config())
    code, out = run_to_exit(mirror_config(), args=["--port", str(first.port)])
    assert code == 70 and "the address is already in use" in out, out
