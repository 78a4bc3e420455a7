"""The SQLite store after a graceful stop (parley.db alone is complete) and `parley backup` while serving."""
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading

import requests

from conftest import PARLEY, mirror_config


def say(server, sender, text):
    r = requests.post(server.url + "/webhooks/rest/webhook", json={"sender": sender, "message": text}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def user_texts(db_path, sender):
    db = sqlite3.connect(db_path)
    try:
        rows = db.execute("SELECT data FROM events WHERE sender_id = ? AND type = 'user' ORDER BY id", (sender,)).fetchall()
    finally:
        db.close()
    import json
    return [json.loads(r[0])["text"] for r in rows]


def test_after_sigterm_the_database_file_alone_holds_every_event(server_factory):
    server = server_factory(mirror_config())
    for i in range(20):
        say(server, "wal", f"message {i}")
    assert server.stop(signal.SIGTERM) == 0
    db = os.path.join(server.workdir, "parley.db")
    wal = db + "-wal"
    assert not os.path.exists(wal) or os.path.getsize(wal) == 0, "the WAL still holds data after a graceful stop"
    # A backup that copies parley.db alone (no -wal, no -shm) is complete.
    copy_dir = tempfile.mkdtemp(prefix="parley-copy-")
    copy = os.path.join(copy_dir, "parley.db")
    shutil.copyfile(db, copy)
    assert user_texts(copy, "wal") == [f"message {i}" for i in range(20)]


def test_parley_backup_while_serving(server_factory):
    server = server_factory(mirror_config())
    for i in range(10):
        say(server, "bk", f"before {i}")
    # Turns keep running while the backup is taken.
    stop = threading.Event()
    errors = []

    def traffic():
        n = 0
        while not stop.is_set() and n < 500:
            try:
                say(server, "busy", f"during {n}")
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
                return
            n += 1

    t = threading.Thread(target=traffic)
    t.start()
    out = os.path.join(tempfile.mkdtemp(prefix="parley-backup-"), "backup.db")
    try:
        p = subprocess.run([PARLEY, "backup", out, "--config", "parley.yml"], cwd=server.workdir,
                           capture_output=True, text=True, timeout=60)
    finally:
        stop.set()
        t.join(timeout=30)
    assert not errors, errors
    assert p.returncode == 0, p.stdout + p.stderr
    assert "events" in p.stdout
    assert not os.path.exists(out + "-wal")
    assert user_texts(out, "bk") == [f"before {i}" for i in range(10)]
    busy = user_texts(out, "busy")
    assert busy == [f"during {i}" for i in range(len(busy))]   # whole turns, in order, no gap
    db = sqlite3.connect(out)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    # The server kept serving.
    assert say(server, "bk", "after")


def test_backup_refuses_to_overwrite_and_names_a_missing_store(server_factory):
    workdir = tempfile.mkdtemp(prefix="parley-backup-")
    existing = os.path.join(workdir, "exists.db")
    open(existing, "w").close()
    p = subprocess.run([PARLEY, "backup", existing, "--store", os.path.join(workdir, "none.db")], capture_output=True, text=True, timeout=30)
    assert p.returncode == 70
    assert "none.db" in p.stderr and "no such file" in p.stderr
    server = server_factory(mirror_config())
    say(server, "x", "hi")
    p = subprocess.run([PARLEY, "backup", existing, "--config", "parley.yml"], cwd=server.workdir, capture_output=True, text=True, timeout=30)
    assert p.returncode == 70
    assert "exists" in p.stderr and "never overwrites" in p.stderr
