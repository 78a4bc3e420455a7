#!/usr/bin/env bash
# Runs a command with real, throw-away services for the tests that need them, then stops them:
#   scripts/with-services.sh swift test
# PostgreSQL: `initdb` + `pg_ctl` in a temporary folder, on a free loopback port, as an unprivileged user (the
# `postgres` system user when run as root, since PostgreSQL refuses to run as root), password authentication
# (scram-sha-256) for the role `parley` / password `parley`, database `parley`. Exported to the command as
#   PARLEY_TEST_POSTGRES_URL=postgres://parley:parley@127.0.0.1:PORT/parley
#   PARLEY_TEST_POSTGRES_BIN=/usr/lib/postgresql/NN/bin   (pg_ctl etc., for tests that restart the server)
#   PARLEY_TEST_POSTGRES_DATA=…                           (its data folder)
#   PARLEY_TEST_POSTGRES_USER=…                           (the system user it runs as)
# Redis: `redis-server` on a free loopback port, no persistence, exported as
#   PARLEY_TEST_REDIS_URL=redis://127.0.0.1:PORT   PARLEY_TEST_REDIS_PORT=PORT
# (tests that stop and restart it start their own redis-server).
# The packages are installed by `scripts/deps.sh test`. A service that cannot start fails the run (exit 1) with
# its log: the tests that need it must not be skipped quietly.
set -euo pipefail

if [ $# -eq 0 ]; then echo "usage: scripts/with-services.sh COMMAND [ARG...]" >&2; exit 2; fi

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
  echo "with-services: PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (run scripts/deps.sh test)" >&2
  exit 1
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

WORK=$(mktemp -d /tmp/parley-services.XXXXXX)
chmod 755 "$WORK"
PG_DATA="$WORK/pg"
PG_PORT=$(free_port)
RUN_AS=()
PG_USER=$(id -un)
if [ "$(id -u)" = 0 ]; then
  PG_USER=postgres
  id -u postgres >/dev/null 2>&1 || { echo "with-services: running as root needs the 'postgres' system user (package postgresql)" >&2; exit 1; }
  RUN_AS=(runuser -u postgres --)
fi
mkdir -p "$PG_DATA"
echo parley >"$WORK/pwfile"
chown -R "$PG_USER" "$WORK"

REDIS_PID=""
stop_services() {
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null || true
  "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap stop_services EXIT

if ! "${RUN_AS[@]}" "$PG_BIN/initdb" -D "$PG_DATA" -U parley --pwfile="$WORK/pwfile" --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 \
  >"$WORK/initdb.log" 2>&1; then
  echo "with-services: initdb failed:" >&2; cat "$WORK/initdb.log" >&2; exit 1
fi
cat >>"$PG_DATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK'
max_connections = 300
shared_buffers = 32MB
EOF
if ! "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$WORK/postgres.log" -w -t 30 start >/dev/null 2>&1; then
  echo "with-services: PostgreSQL did not start:" >&2; cat "$WORK/postgres.log" >&2; exit 1
fi
PGPASSWORD=parley "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U parley -d postgres -qc "CREATE DATABASE parley" >/dev/null

command -v redis-server >/dev/null || { echo "with-services: redis-server not found (run scripts/deps.sh test)" >&2; exit 1; }
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 1 50); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  sleep 0.1
done
redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 || { echo "with-services: redis-server did not start:" >&2; cat "$WORK/redis.log" >&2; exit 1; }
export PARLEY_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
export PARLEY_TEST_REDIS_PORT="$REDIS_PORT"

export PARLEY_TEST_POSTGRES_URL="postgres://parley:parley@127.0.0.1:$PG_PORT/parley"
export PARLEY_TEST_POSTGRES_BIN="$PG_BIN"
export PARLEY_TEST_POSTGRES_DATA="$PG_DATA"
export PARLEY_TEST_POSTGRES_USER="$PG_USER"
echo "with-services: PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT (data $PG_DATA), redis-server on 127.0.0.1:$REDIS_PORT"

set +e
"$@"
status=$?
set -e
exit $status
