"""JWT on the socketio channel: accept and reject per algorithm family (PyJWT signs the tokens)."""
import json
import time

import jwt as pyjwt
import pytest
import socketio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from conftest import mirror_config
from sio_helpers import Client, RawPolling

# Short HMAC secrets are deliberate: Rasa users write them, and both sides must accept them.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

REJECTION = '44{"message":"Connection rejected by server"}'


def pem_pair(private_key):
    private = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = private_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public.decode()


def family(method):
    """(signing key, key file content for the server) for a jwt_method."""
    if method.startswith("HS"):
        return "a-shared-secret", "a-shared-secret"
    if method.startswith("RS"):
        return pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    if method == "ES256":
        return pem_pair(ec.generate_private_key(ec.SECP256R1()))
    if method == "ES384":
        return pem_pair(ec.generate_private_key(ec.SECP384R1()))
    if method == "EdDSA":
        return pem_pair(ed25519.Ed25519PrivateKey.generate())
    raise ValueError(method)


def jwt_server(server_factory, method, extra=""):
    signing, key = family(method)
    cfg = mirror_config(extra_socketio=f"jwt_key_file: jwt.key\njwt_method: {method}\n{extra}")
    return server_factory(cfg, files={"jwt.key": key}), signing


def rejected_raw(server, auth_json):
    raw = RawPolling(server.url)
    raw.send("40" + auth_json if auth_json is not None else "40")
    return raw.receive()


@pytest.mark.parametrize("method", ["HS256", "HS512", "RS256", "ES256", "ES384", "EdDSA"])
def test_accept_and_reject_per_family(server_factory, method):
    server, signing = jwt_server(server_factory, method)
    good = pyjwt.encode({"sub": "u1", "exp": int(time.time()) + 600}, signing, algorithm=method)
    for token in (good, "Bearer " + good):
        c = Client(server.url, auth={"token": token})
        try:
            sid = c.request_session(None)
            c.say("authenticated", sid)
            assert c.replies(1) == [{"text": "authenticated"}]
        finally:
            c.close()
    expired = pyjwt.encode({"sub": "u1", "exp": int(time.time()) - 60}, signing, algorithm=method)
    empty = pyjwt.encode({}, signing, algorithm=method)
    other_signing, _ = family(method) if not method.startswith("HS") else ("another-secret", None)
    bad_signature = pyjwt.encode({"sub": "u1"}, other_signing, algorithm=method)
    wrong_alg = pyjwt.encode({"sub": "u1"}, "a-shared-secret", algorithm="HS384")
    unsigned = pyjwt.encode({"sub": "u1"}, None, algorithm="none")
    for auth in ({"token": expired}, {"token": empty}, {"token": bad_signature}, {"token": wrong_alg},
                 {"token": unsigned}, {"token": "garbage"}, {"token": ""}, {}, {"token": 5}):
        assert rejected_raw(server, json.dumps(auth)) == [REJECTION], auth
    assert rejected_raw(server, None) == [REJECTION]
    # A non-object auth payload is a protocol violation: the connection fails (Rasa's handler raises).
    assert rejected_raw(server, '"just a string"') in ([REJECTION], ["1"])


def test_python_client_sees_the_rejection(server_factory):
    server, _ = jwt_server(server_factory, "HS256")
    sio = socketio.Client(reconnection=False)
    errors = []
    sio.on("connect_error", lambda data: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        sio.connect(server.url, auth={"token": "nope"}, wait_timeout=10)
    assert errors == [{"message": "Connection rejected by server"}]


def test_session_claim_binds_the_socket(server_factory):
    server, signing = jwt_server(server_factory, "HS256", extra="jwt_session_claim: sub")
    token = pyjwt.encode({"sub": "conv-7"}, signing, algorithm="HS256")
    c = Client(server.url, auth={"token": token})
    try:
        assert c.request_session(None) == "conv-7"          # no id: the token's session
        c.emit("session_request", {"session_id": "someone-else"})  # refused: no confirm
        assert c.request_session("conv-7") == "conv-7"
        c.say("other", "someone-else")                     # ignored
        c.say("mine", "conv-7")
        assert c.replies(1) == [{"text": "mine"}]
    finally:
        c.close()
    no_claim = pyjwt.encode({"name": "x"}, signing, algorithm="HS256")
    assert rejected_raw(server, json.dumps({"token": no_claim})) == [REJECTION]
