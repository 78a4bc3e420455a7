#!/usr/bin/env bash
# Creates (once) the Python virtualenv used by the black-box tests: the python-socketio client from PyPI.
set -euo pipefail
VENV=${1:-.venv-test}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import socketio, pytest, requests, websocket, jwt, aiohttp, msgpack, redis' 2>/dev/null; then
  "$VENV/bin/pip" install -q --disable-pip-version-check -r Tests/python/requirements.txt
fi
