"""`server.tls`: `parley serve` with a PEM certificate and key serves HTTPS and WSS on its one port (Engine.IO
polling, the WebSocket upgrade, the REST webhook and the conversation API), and every certificate or key
mistake stops startup with exit code 70 and one line naming the file and the fix.

The certificates are made here with `cryptography` (installed in the test venv through PyJWT[crypto]).
"""
import datetime
import ipaddress
import os
import queue
import signal
import socket
import ssl
import time

import pytest
import requests
import socketio
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import mirror_config, run_to_exit, start
from sio_helpers import WAIT, Client

TLS_CONFIG = "server:\n  tls: {cert: cert.pem, key: key.pem}\n"

# The self-signed certificate is not verified by the socket.io clients (ssl_verify=False).
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


# Certificates --------------------------------------------------------------------------------------------

def make_key():
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key, password=None):
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()


def self_signed_pem(key):
    """A self-signed certificate for localhost and 127.0.0.1, valid for a day."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def pem():
    """(certificate PEM, matching key PEM, another key PEM)."""
    key = make_key()
    return self_signed_pem(key), key_pem(key), key_pem(make_key())


# A TLS server --------------------------------------------------------------------------------------------

def start_tls(config_text, files):
    """Starts `parley serve` with TLS; waits until the root route answers over HTTPS. Returns (server, https url)."""
    server = start(config_text, files=files, wait=False)
    url = f"https://127.0.0.1:{server.port}"
    deadline = time.monotonic() + 30
    while True:
        if server.proc.poll() is not None:
            raise AssertionError(f"parley exited with {server.proc.returncode}:\n{server.logs()}")
        try:
            requests.get(url + "/", verify=False, timeout=0.5)
            return server, url
        except requests.RequestException:
            if time.monotonic() > deadline:
                server.stop(signal.SIGKILL)
                raise AssertionError(f"parley did not start:\n{server.logs()}")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def tls_server(pem):
    cert, key, _ = pem
    server, url = start_tls(mirror_config(extra=TLS_CONFIG), {"cert.pem": cert, "key.pem": key})
    server.https = url
    server.cert_path = os.path.join(server.workdir, "cert.pem")
    yield server
    assert server.stop() == 0, server.logs()


class TLSClient(Client):
    """The python-socketio client of sio_helpers over TLS, without certificate verification (self-signed)."""

    def __init__(self, url, transports=None):
        self.events = queue.Queue()
        self.namespace = "/"
        # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a session's verify=False, so the polling
        # session ignores the environment (127.0.0.1 needs no proxy either).
        http = requests.Session()
        http.trust_env = False
        http.verify = False
        self.sio = socketio.Client(reconnection=False, ssl_verify=False, http_session=http)
        for name in ("session_confirm", "bot_uttered"):
            self.sio.on(name, self._handler(name), namespace="/")
        kwargs = {"namespaces": ["/"], "wait_timeout": WAIT}
        if transports:
            kwargs["transports"] = transports
        self.sio.connect(url, **kwargs)


def wait_for(condition, bound=WAIT):
    """Waits (bounded) until `condition()` is true; returns its last value."""
    deadline = time.monotonic() + bound
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


# Serving over TLS ----------------------------------------------------------------------------------------

def test_https_health_and_rest_with_certificate_verification(tls_server):
    # verify= the self-signed certificate: the server presents exactly the configured certificate.
    r = requests.get(tls_server.https + "/webhooks/socketio/", verify=tls_server.cert_path, timeout=5)
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = requests.post(
        tls_server.https + "/webhooks/rest/webhook",
        json={"sender": "tls-rest", "message": "hello over tls"},
        verify=tls_server.cert_path,
        timeout=10,
    )
    assert r.status_code == 200
    assert r.json() == [{"recipient_id": "tls-rest", "text": "hello over tls"}]
    r = requests.get(tls_server.https + "/conversations/tls-rest/messages", verify=tls_server.cert_path, timeout=5)
    assert r.status_code == 200
    assert [m.get("text") for m in r.json()["messages"]] == ["hello over tls", "hello over tls"]


@pytest.mark.parametrize("transports", [["polling"], ["websocket"]])
def test_socketio_over_tls(tls_server, transports):
    c = TLSClient(tls_server.https, transports=transports)
    try:
        assert c.sio.transport() == transports[0]
        sid = c.request_session(None)
        c.say("hi " + transports[0], sid)
        assert c.replies(1) == [{"text": "hi " + transports[0]}]
    finally:
        c.close()


def test_polling_upgrades_to_wss_and_continues(tls_server):
    c = TLSClient(tls_server.https)  # polling first, then the WebSocket upgrade over TLS
    try:
        sid = c.request_session("tls-upgrade")
        assert sid == "tls-upgrade"
        assert wait_for(lambda: c.sio.transport() == "websocket"), "the client did not upgrade to websocket"
        for i in range(3):
            c.say(f"m{i}", sid)
        assert c.replies(3) == [{"text": f"m{i}"} for i in range(3)]
    finally:
        c.close()
    r = requests.get(tls_server.https + "/conversations/tls-upgrade/messages", verify=False, timeout=5)
    assert [m.get("text") for m in r.json()["messages"]] == ["m0", "m0", "m1", "m1", "m2", "m2"]


def test_plain_http_on_the_tls_port_is_refused_and_serving_goes_on(tls_server):
    with pytest.raises(requests.RequestException):
        requests.get(f"http://127.0.0.1:{tls_server.port}/webhooks/socketio/", timeout=5)
    # A client that sends garbage instead of a TLS handshake.
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as s:
        s.sendall(b"\x00" * 64 + b"not tls\r\n\r\n")
        s.settimeout(5)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
    r = requests.get(tls_server.https + "/webhooks/socketio/", verify=False, timeout=5)
    assert r.status_code == 200


def test_tls_1_2_and_1_3_are_offered(tls_server):
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.create_default_context(cafile=tls_server.cert_path)
        ctx.minimum_version = version
        ctx.maximum_version = version
        with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                assert s.version() == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]


def test_serving_log_names_the_https_url(tls_server):
    assert f"https://127.0.0.1:{tls_server.port}" in tls_server.logs()


# Certificate and key mistakes ----------------------------------------------------------------------------

def tls_error(files, tls="{cert: cert.pem, key: key.pem}"):
    code, out = run_to_exit(mirror_config(extra=f"server:\n  tls: {tls}\n"), args=["--port", "0"], files=files)
    assert code == 70, out
    lines = [l for l in out.splitlines() if l.startswith("parley: ")]
    assert len(lines) == 1, out
    return lines[0]


def test_missing_certificate_file(pem):
    line = tls_error({"key.pem": pem[1]})
    assert "server.tls.cert " in line and "cert.pem: file not found" in line, line


def test_missing_key_file(pem):
    line = tls_error({"cert.pem": pem[0]})
    assert "server.tls.key " in line and "key.pem: file not found" in line, line


def test_key_path_is_a_folder(pem):
    line = tls_error({"cert.pem": pem[0]}, tls="{cert: cert.pem, key: .}")
    assert "server.tls.key " in line and "is a folder" in line, line


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of their mode")
def test_unreadable_key_file(pem, tmp_path):
    # run_to_exit writes the files itself; an absolute path to an unreadable key is used instead.
    key = tmp_path / "key.pem"
    key.write_text(pem[1])
    key.chmod(0)
    line = tls_error({"cert.pem": pem[0]}, tls=f"{{cert: cert.pem, key: {key}}}")
    assert f"server.tls.key {key}: cannot be read" in line, line


def test_certificate_is_not_pem(pem):
    line = tls_error({"cert.pem": "this is not a certificate\n", "key.pem": pem[1]})
    assert "server.tls.cert " in line and "cert.pem: no PEM certificate" in line, line


def test_key_is_not_pem(pem):
    line = tls_error({"cert.pem": pem[0], "key.pem": pem[0]})  # the certificate given as the key
    assert "server.tls.key " in line and "key.pem: no PEM private key" in line, line


def test_encrypted_key(pem):
    line = tls_error({"cert.pem": pem[0], "key.pem": key_pem(make_key(), password=b"secret")})
    assert "key.pem: the private key is encrypted" in line and "openssl pkey" in line, line


def test_key_does_not_match_the_certificate(pem):
    line = tls_error({"cert.pem": pem[0], "key.pem": pem[2]})
    assert "key.pem: the private key does not match the certificate in" in line and "cert.pem" in line, line


def test_tls_without_key_is_a_configuration_error(pem):
    code, out = run_to_exit(mirror_config(extra="server:\n  tls: {cert: cert.pem}\n"), files={"cert.pem": pem[0]})
    assert code == 78 and "server.tls.key: missing" in out, out
