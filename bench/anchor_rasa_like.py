"""Anchor server for `make bench`: the Rasa `socketio` channel on python-socketio, aiohttp and uvloop.

It does what rasa/core/channels/socketio.py does for a connected user, with an echo bot in place of
the Rasa agent, so Parley is compared with what a Rasa user runs today (on its fastest Python stack):

  * `session_request` {session_id?}: take the client's id or make one (uuid4 hex); with session
    persistence (the default, as in Rasa's credentials.yml) the socket enters the room named by the
    session id; then `session_confirm` with the bare id to that socket.
  * `user_uttered` {message, session_id}: with persistence the sender is the session id (a message
    without one is dropped with a warning, as Rasa does); the bot's reply text is split on blank
    lines and each part is emitted as `bot_uttered` {"text": part} to the sender's room.

    python anchor_rasa_like.py [--host 127.0.0.1] [--port 17007] [--no-persistence]

The process it runs as is the server (one process, one event loop), so its PID is what gets measured.
"""
import argparse
import asyncio
import logging
import os
import sys
import uuid

import socketio
import uvloop
from aiohttp import web

logging.basicConfig(level=logging.WARNING)
log = logging.getLogger("anchor")


def make_server(persistence: bool) -> socketio.AsyncServer:
    sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins=[])

    @sio.on("connect")
    async def on_connect(sid, environ, auth=None):
        return True

    @sio.on("disconnect")
    async def on_disconnect(sid, *args):
        pass

    @sio.on("session_request")
    async def on_session_request(sid, data):
        data = data if isinstance(data, dict) else {}
        session_id = data.get("session_id") or uuid.uuid4().hex
        if persistence:
            await sio.enter_room(sid, session_id)
        await sio.emit("session_confirm", session_id, room=sid)

    @sio.on("user_uttered")
    async def on_user_uttered(sid, data):
        data = data if isinstance(data, dict) else {}
        if persistence:
            recipient = data.get("session_id")
            if not recipient:
                log.warning("A message without a valid session_id was received.")
                return
        else:
            recipient = sid
        text = data.get("message", "")
        # The echo bot: the reply is the user's text; the output channel sends each part.
        for part in str(text).strip().split("\n\n"):
            await sio.emit("bot_uttered", {"text": part}, room=recipient)

    return sio


async def serve(host: str, port: int, persistence: bool) -> None:
    sio = make_server(persistence)
    app = web.Application()
    sio.attach(app, socketio_path="socket.io")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096)
    await site.start()
    print(f"anchor: python-socketio on aiohttp + uvloop at {host}:{port}, pid {os.getpid()}", file=sys.stderr, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=17007)
    ap.add_argument("--no-persistence", action="store_true", help="reply to the socket, not the session room")
    a = ap.parse_args()
    try:
        uvloop.run(serve(a.host, a.port, not a.no_persistence))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
