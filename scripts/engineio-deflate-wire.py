"""Bytes on the wire per echoed bot-like reply (~1.4 KB JSON), WebSocket with and without permessage-deflate.

    .build/debug/parley-protocol-server --port 3920 --per-message-deflate &
    .venv-test/bin/python scripts/engineio-deflate-wire.py 3920
"""
import socket, json, sys, time
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, TextMessage, Request, Ping
from wsproto.extensions import PerMessageDeflate
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 3920


def run(deflate, n=500):
    sock = socket.create_connection(("127.0.0.1", PORT))
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(ws.send(Request(host="x", target="/engine.io/?EIO=4&transport=websocket", extensions=[PerMessageDeflate(server_no_context_takeover=(deflate == "nctx"))] if deflate else [])))
    received = 0; got = []; msgs=[]
    def pump():
        nonlocal received
        d = sock.recv(65536); received += len(d); ws.receive_data(d)
        for e in ws.events():
            if isinstance(e, TextMessage): msgs.append(e.data)
    while not msgs: pump()
    msgs.clear(); received = 0
    reply = "4" + json.dumps({"text": "Here are the opening hours of our stores in your area. " * 3,
        "quick_replies": [{"title": f"Store {i}", "payload": f"/store{{\"id\": {i}}}"} for i in range(20)],
        "custom": {"recipient_id": "abc123", "metadata": {"lang": "en", "channel": "socketio"}}})
    t = time.perf_counter()
    for i in range(n):
        sock.sendall(ws.send(TextMessage(data=reply)))
        while not msgs: pump()
        m = msgs.pop(0)
        if m == "2": sock.sendall(ws.send(TextMessage(data="3"))); 
    dt = time.perf_counter() - t
    sock.close()
    return len(reply), received / n, dt / n * 1e6
# False: no offer; True: offer (context takeover); "nctx": offer with server_no_context_takeover
for d in (False, True, "nctx"):
    size, per, us = run(d)
    print(f"deflate={d}: message {size} B, received {per:.0f} B/message on the wire, {us:.0f} us/round trip (debug build, python client)")
