"""docs/deploying.md's nginx configuration, for real: TLS at nginx, Socket.IO over WebSocket and long-polling,
the REST channel and /health through it (nginx from Debian, a self-signed certificate made by openssl)."""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import requests
import socketio

from conftest import free_port, mirror_config

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


@pytest.fixture
def nginx_front(server_factory):
    if not NGINX or not shutil.which("openssl"):
        pytest.skip("nginx or openssl is not installed (scripts/deps.sh test installs nginx)")
    server = server_factory(mirror_config(persistence=True))
    d = tempfile.mkdtemp(prefix="parley-nginx-")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", f"{d}/key.pem", "-out", f"{d}/cert.pem"], check=True, capture_output=True)
    port = free_port()
    # The server block of docs/deploying.md, with paths and ports of this test.
    conf = f"""
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
    uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    upstream parley {{
        server 127.0.0.1:{server.port};
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name 127.0.0.1;
        ssl_certificate     {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        location /socket.io/ {{
            proxy_pass http://parley;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering off;
            proxy_read_timeout 75s;
        }}
        location / {{
            proxy_pass http://parley;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            client_max_body_size 1m;
        }}
    }}
}}
"""
    with open(f"{d}/nginx.conf", "w") as f:
        f.write(conf)
    proc = subprocess.Popen([NGINX, "-c", f"{d}/nginx.conf", "-p", d], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.1)
    yield f"https://127.0.0.1:{port}", server
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("transports", [["websocket"], ["polling"], ["polling", "websocket"]])
def test_socketio_through_nginx_with_tls(nginx_front, transports, monkeypatch):
    url, _ = nginx_front
    # requests prefers a CA bundle from the environment over a session's verify=False.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    replies = []
    http = requests.Session()
    http.verify = False          # the test's self-signed certificate
    sio = socketio.Client(reconnection=False, ssl_verify=False, http_session=http)
    confirmed = []
    sio.on("session_confirm", lambda sid: confirmed.append(sid))
    sio.on("bot_uttered", lambda m: replies.append(m))
    sio.connect(url, transports=transports, wait_timeout=10)
    try:
        sio.emit("session_request", {"session_id": "through-nginx-" + "-".join(transports)})
        deadline = time.monotonic() + 10
        while not confirmed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert confirmed
        sio.emit("user_uttered", {"message": "hello via nginx", "session_id": confirmed[0]})
        while not replies and time.monotonic() < deadline:
            time.sleep(0.05)
        assert replies == [{"text": "hello via nginx"}]
        assert sio.transport() == transports[-1]
    finally:
        sio.disconnect()


def test_rest_and_health_through_nginx(nginx_front):
    url, _ = nginx_front
    r = requests.post(url + "/webhooks/rest/webhook", json={"sender": "nginx-rest", "message": "hi"}, verify=False, timeout=10)
    assert r.status_code == 200 and r.json()[0]["text"] == "hi"
    h = requests.get(url + "/health", verify=False, timeout=10)
    assert h.status_code == 200 and h.json()["store"] == "ok"
