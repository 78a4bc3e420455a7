#!/usr/bin/env bash
# scripts/bench.sh (`make bench`): Parley vs the reference Node.js socket.io server vs the python-socketio anchor
# vs a raw SwiftNIO WebSocket echo, all driven by the same load generator (`parley loadtest`), side by side in one run.
#
#   make bench                    # 3 repetitions of S1-S4 for each server (about 15 minutes)
#   BENCH_QUICK=1 make bench      # smoke run: 1 repetition, short durations, smaller S3/S4
#
# Environment (all optional):
#   REPS=3                   repetitions per scenario and server (a fresh server process for each run)
#   SERVERS="parley parley-mem parley-iso node anchor echo"   which servers to measure (parley-mem: Parley with
#                            store: memory, S1 and S2 only, to show what the durable store costs; parley-iso: the
#                            same with the agent in a host process of its own (isolation: process), S1 and S2 only,
#                            to show what the process boundary costs; node: the
#                            unmodified upstream socket.io 4.8.3 built by ../shared/bench/anchors/node-sio/setup.sh
#                            from local git copies of socketio/socket.io and websockets/ws, skipped with a note
#                            when those copies or node are missing)
#   SCENARIOS="S1 S2 S3 S4"  which scenarios
#   PARLEY_PORT=17005 ANCHOR_PORT=17007 ECHO_PORT=17902 NODE_PORT=17009
#   NODE_SIO_ANCHOR=../shared/bench/anchors/node-sio   the Node anchor's (read-only) folder
#   MIRROR_DIR=/work/.mirror  where setup.sh finds the git copies (default: ../.mirror beside shared/)
#   PARLEY_CONFIG=examples/mirror.yml
#   PARLEY_SERVE_ARGS="serve --config examples/mirror.yml --port 17005"   the parley server command line
#   PIN_SERVER=0 PIN_GEN=1   CPUs for server and generator (taskset); pinning is skipped on 1 CPU
#   PYTHON=python3.11        interpreter for the anchor's virtualenv (.venv-bench)
#   SKIP_BUILD=1             use the existing release build
#
# Scenarios (each run is bounded by the generator's own timeouts and by `timeout` here):
#   S1  rtt 1 client, 10 s after 2 s warm-up          latency p50/p99, msgs/s
#   S2  rtt 100 clients, 10 s after 2 s warm-up       msgs/s, p99
#   S3  connect 2000 sessions, 100 in flight          sessions/s
#   S4  idle 5000 sessions, held 10 s                 server RSS bytes per idle session
# Raw JSON lines: .build/bench/results-<stamp>.jsonl, server logs: .build/bench/logs/. Table: bench/results.md.
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
  REPS=${REPS:-1}; DUR=${DUR:-3}; WARM=${WARM:-1}; S3_N=${S3_N:-500}; S4_N=${S4_N:-1000}; HOLD=${HOLD:-3}
else
  REPS=${REPS:-3}; DUR=${DUR:-10}; WARM=${WARM:-2}; S3_N=${S3_N:-2000}; S4_N=${S4_N:-5000}; HOLD=${HOLD:-10}
fi
S2_C=${S2_C:-100} S3_K=${S3_K:-100} S4_K=${S4_K:-100}
SERVERS=${SERVERS:-"parley parley-mem parley-iso node anchor echo"}
SCENARIOS=${SCENARIOS:-"S1 S2 S3 S4"}
PARLEY_PORT=${PARLEY_PORT:-17005} ANCHOR_PORT=${ANCHOR_PORT:-17007} ECHO_PORT=${ECHO_PORT:-17902} NODE_PORT=${NODE_PORT:-17009}
NODE_SIO_ANCHOR=${NODE_SIO_ANCHOR:-../shared/bench/anchors/node-sio}
NODE_SIO_DIR=bench/.node-sio
PARLEY_CONFIG=${PARLEY_CONFIG:-examples/mirror.yml}
PARLEY_SERVE_ARGS=${PARLEY_SERVE_ARGS:-"serve --config $PARLEY_CONFIG --port $PARLEY_PORT"}
PIN_SERVER=${PIN_SERVER:-0} PIN_GEN=${PIN_GEN:-1}
VENV=${BENCH_VENV:-.venv-bench}
REL=.build/release
GEN="$REL/parley"
OUTDIR=.build/bench
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
JSONL="$OUTDIR/results-$STAMP.jsonl"
mkdir -p "$OUTDIR/logs" bench
: >"$JSONL"

say() { echo "bench: $*" >&2; }
note() { echo "$*" >>"$OUTDIR/notes-$STAMP.txt"; say "$*"; }

# ---- build ---------------------------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  say "building release (swift build -c release --product parley, parley-plugin-host, NIOEchoBench)"
  if ! swift build -c release --product parley >"$OUTDIR/logs/build-parley.log" 2>&1; then
    tail -30 "$OUTDIR/logs/build-parley.log" >&2
    say "the release build of parley failed (see $OUTDIR/logs/build-parley.log): the load generator is part of it, so nothing can be measured"
    exit 1
  fi
  swift build -c release --product parley-plugin-host >"$OUTDIR/logs/build-plugin-host.log" 2>&1 \
    || note "parley-plugin-host did not build (see $OUTDIR/logs/build-plugin-host.log); parley-iso cannot start"
  swift build -c release --product NIOEchoBench >"$OUTDIR/logs/build-echo.log" 2>&1 \
    || note "NIOEchoBench did not build (see $OUTDIR/logs/build-echo.log); the raw-echo column will be empty"
  make --no-print-directory plugins >"$OUTDIR/logs/build-plugins.log" 2>&1 \
    || note "make plugins failed (see $OUTDIR/logs/build-plugins.log); parley serve may not find its agent"
fi
[ -x "$GEN" ] || { say "$GEN is missing: run without SKIP_BUILD=1"; exit 1; }

# ---- anchor virtualenv -----------------------------------------------------------------------------
setup_venv() {
  local py=${PYTHON:-}
  if [ -z "$py" ]; then
    for c in python3.11 python3.12 python3; do command -v "$c" >/dev/null && { py=$c; break; }; done
  fi
  [ -x "$VENV/bin/python" ] || "$py" -m venv "$VENV" || return 1
  local stamp="$VENV/.requirements-anchor.sha"
  local want; want=$(sha256sum bench/requirements-anchor.txt | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$VENV/bin/pip" install -q --disable-pip-version-check -r bench/requirements-anchor.txt || return 1
    echo "$want" >"$stamp"
  fi
}
case " $SERVERS " in *" anchor "*)
  setup_venv >"$OUTDIR/logs/venv.log" 2>&1 || note "could not create $VENV with bench/requirements-anchor.txt (see $OUTDIR/logs/venv.log)";;
esac

# ---- Node socket.io anchor (built from local git copies, no npm) ------------------------------------
case " $SERVERS " in *" node "*)
  if ! command -v node >/dev/null; then
    note "node: skipped, Node.js is missing (apt-get install nodejs)"; SERVERS=${SERVERS/node/}
  elif [ ! -f "$NODE_SIO_ANCHOR/setup.sh" ]; then
    note "node: skipped, $NODE_SIO_ANCHOR/setup.sh is missing (set NODE_SIO_ANCHOR)"; SERVERS=${SERVERS/node/}
  elif ! NODE_SIO_DIR="$NODE_SIO_DIR" bash "$NODE_SIO_ANCHOR/setup.sh" >"$OUTDIR/logs/node-setup.log" 2>&1; then
    note "node: skipped, the anchor could not be built: $(tail -1 "$OUTDIR/logs/node-setup.log") (fetch github:socketio/socket.io and github:websockets/ws into the mirror folder, or set MIRROR_DIR; log: $OUTDIR/logs/node-setup.log)"
    SERVERS=${SERVERS/node/}
  else
    say "node anchor: $(grep -m1 '^socket.io ' "$OUTDIR/logs/node-setup.log" || echo built)"
  fi;;
esac

# ---- machine -------------------------------------------------------------------------------------
NCPU=$(nproc 2>/dev/null || echo 1)
TASKSET_S=() TASKSET_G=()
if command -v taskset >/dev/null && [ "$NCPU" -ge 2 ]; then
  TASKSET_S=(taskset -c "$PIN_SERVER"); TASKSET_G=(taskset -c "$PIN_GEN")
else
  note "not pinning server and generator (taskset missing or only $NCPU CPU): numbers are less stable"
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge $((S4_N + 200)) ] 2>/dev/null || note "ulimit -n is $(ulimit -n): S4 with $S4_N sessions may fail (raise the hard limit)"

# ---- servers -------------------------------------------------------------------------------------
server_port() { case $1 in parley|parley-mem|parley-iso) echo "$PARLEY_PORT";; anchor) echo "$ANCHOR_PORT";; echo) echo "$ECHO_PORT";; node) echo "$NODE_PORT";; esac; }
server_cmd() {
  case $1 in
    parley) echo "$REL/parley $PARLEY_SERVE_ARGS";;
    parley-mem) echo "$REL/parley serve --config examples/mirror-memory.yml --port $PARLEY_PORT";;
    parley-iso) echo "$REL/parley serve --config examples/mirror-isolated.yml --port $PARLEY_PORT";;
    anchor) echo "$VENV/bin/python bench/anchor_rasa_like.py --port $ANCHOR_PORT";;
    echo) echo "$REL/NIOEchoBench $ECHO_PORT 127.0.0.1 1";;
    node) echo "node $NODE_SIO_DIR/server.mjs --port $NODE_PORT";;
  esac
}
proto_of() { [ "$1" = echo ] && echo raw || echo sio; }

SPID=""
stop_server() {
  [ -n "$SPID" ] || return 0
  kill -TERM "$SPID" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$SPID" 2>/dev/null && kill -KILL "$SPID" 2>/dev/null
  wait "$SPID" 2>/dev/null
  SPID=""
}
trap 'stop_server; exit 130' INT TERM
trap stop_server EXIT

port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# start_server NAME LOG: fresh server, pinned; ready once one whole session + round trip succeeds (<= 60 s)
start_server() {
  local name=$1 log=$2 port; port=$(server_port "$name")
  if port_busy "$port"; then echo "port $port is already in use by another process" >"$log"; return 1; fi
  # shellcheck disable=SC2046
  "${TASKSET_S[@]}" $(server_cmd "$name") >"$log" 2>&1 &
  SPID=$!
  for _ in $(seq 1 120); do
    kill -0 "$SPID" 2>/dev/null || { SPID=""; return 1; }
    if "$GEN" loadtest connect -p "$port" --proto "$(proto_of "$name")" -n 1 -k 1 -t 2 -E 2 >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  stop_server
  return 1
}

scenario_args() {
  case $1 in
    S1) echo "rtt -c 1 -d $DUR -w $WARM";;
    S2) echo "rtt -c $S2_C -d $DUR -w $WARM";;
    S3) echo "connect -n $S3_N -k $S3_K";;
    S4) echo "idle -n $S4_N -k $S4_K -d $HOLD";;
  esac
}

for name in $SERVERS; do
  port=$(server_port "$name")
  for S in $SCENARIOS; do
    # The memory-store variant only explains the latency/throughput rows.
    case $name in parley-mem|parley-iso) case $S in S1|S2) ;; *) continue;; esac;; esac
    for rep in $(seq 1 "$REPS"); do
      log="$OUTDIR/logs/$name-$S-$rep.log"
      if ! start_server "$name" "$log"; then
        note "$name $S rep $rep: server did not start or never became ready: $( (grep -m1 -i 'error' "$log" || tail -1 "$log") 2>/dev/null | cut -c1-160) (full log: $log)"
        echo "{\"server\":\"$name\",\"scenario\":\"$S\",\"rep\":$rep,\"failed\":\"server start\"}" >>"$JSONL"
        continue
      fi
      # shellcheck disable=SC2046
      J=$(timeout 600 "${TASKSET_G[@]}" "$GEN" loadtest $(scenario_args "$S") -p "$port" --proto "$(proto_of "$name")" --pid "$SPID" 2>/dev/null)
      rc=$?
      alive=1; kill -0 "$SPID" 2>/dev/null || alive=0
      stop_server
      [ -n "$J" ] || J="{\"failed\":\"generator exit $rc\"}"
      J=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(server=sys.argv[2],scenario=sys.argv[3],rep=int(sys.argv[4]),gen_rc=int(sys.argv[5]),server_alive_after=bool(int(sys.argv[6]))); print(json.dumps(d))' "$J" "$name" "$S" "$rep" "$rc" "$alive" 2>/dev/null || echo "{\"server\":\"$name\",\"scenario\":\"$S\",\"rep\":$rep,\"failed\":\"bad generator output\"}")
      echo "$J" >>"$JSONL"
      say "$name $S rep $rep: $(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print({k:d.get(k) for k in ("msgs_per_s","sessions_per_s","rss_per_conn_bytes","errors","gen_cpu_pct","server_cpu_pct","other_cpu_pct","failed") if k in d}, d.get("lat_us",{}).get("p50"), d.get("lat_us",{}).get("p99"))' "$J")"
      sleep 1
    done
  done
done

MACHINE="$(nproc) vCPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
SWIFTV=$(swift --version 2>/dev/null | head -1)
NODEV=$(grep -m1 '^socket.io ' "$OUTDIR/logs/node-setup.log" 2>/dev/null | cut -d, -f1,2,6,11 || true)
PYV=$("$VENV/bin/python" -c 'import sys, importlib.metadata as m; print("CPython %d.%d.%d, python-socketio %s, aiohttp %s, uvloop %s" % (sys.version_info[:3] + (m.version("python-socketio"), m.version("aiohttp"), m.version("uvloop"))))' 2>/dev/null || echo "anchor venv unavailable")
# One write + fdatasync on the disk the store uses (what every S1 turn waits for), median of 300.
FSYNC_US=$(python3 - "$OUTDIR" <<'PY' 2>/dev/null || echo ""
import os, statistics, sys, time
path = os.path.join(sys.argv[1], "fsync.probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
samples = []
for i in range(300):
    t = time.perf_counter(); os.pwrite(fd, b"x" * 4096, (i % 16) * 4096); os.fdatasync(fd); samples.append(time.perf_counter() - t)
os.close(fd); os.unlink(path)
print(f"{statistics.median(samples) * 1e6:.1f}")
PY
)
python3 scripts/bench_table.py "$JSONL" ${FSYNC_US:+--fsync-us "$FSYNC_US"} --machine "$MACHINE" --swift "$SWIFTV" --python "$PYV" --node "${NODEV:-not measured}" \
  --reps "$REPS" --quick "$QUICK" --notes "$OUTDIR/notes-$STAMP.txt" \
  --sizes "S1 rtt -c 1 -d $DUR -w $WARM; S2 rtt -c $S2_C -d $DUR -w $WARM; S3 connect -n $S3_N -k $S3_K; S4 idle -n $S4_N -k $S4_K -d $HOLD" \
  >bench/results.md
cat bench/results.md
say "table written to bench/results.md; raw results in $JSONL"
