#!/usr/bin/env bash
# scripts/bench_cluster.sh (`make bench-cluster`, also run by `make bench`): S2 (100 clients echoing through the C
# mirror agent) against Parley's cluster setups on loopback, in one run, inside scripts/with-services.sh (a
# throw-away PostgreSQL and redis-server):
#   sqlite          1 node, the embedded SQLite store (the reference in this run)
#   pg              1 node, store: postgres, no Redis
#   pg-redis        1 node, store: postgres + adapter: redis
#   2nodes          2 nodes, postgres + redis, behind nginx (examples/cluster/nginx-sid.conf)
# Everything serving (nodes, PostgreSQL, redis-server, nginx) is pinned to CPU $PIN_SERVER, the generator to
# $PIN_GEN, so the numbers say what one core does. For each run: msgs/s, p99, and the CPU time per message of
# each component (from /proc: the Parley nodes, PostgreSQL's processes, redis-server, nginx) — the per-turn cost
# of every hop, which docs/scaling.md's capacity model uses.
#   REPS=3 DUR=10 WARM=2 S2_C=100 SKIP_BUILD=1
# Writes bench/cluster-results.md and .build/bench/cluster-<stamp>.jsonl.
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ -z "${PARLEY_TEST_POSTGRES_URL:-}" ]; then exec bash scripts/with-services.sh bash "$0" "$@"; fi

REPS=${REPS:-3} DUR=${DUR:-10} WARM=${WARM:-2} S2_C=${S2_C:-100}
PIN_SERVER=${PIN_SERVER:-0} PIN_GEN=${PIN_GEN:-1}
SETUPS=${SETUPS:-"sqlite pg pg-redis 2nodes"}
REL=.build/release
OUT=.build/bench
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
JSONL="$OUT/cluster-$STAMP.jsonl"
WORK=$(mktemp -d /tmp/parley-bench-cluster.XXXXXX)
mkdir -p "$OUT" bench
: >"$JSONL"
say() { echo "bench-cluster: $*" >&2; }

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  say "building release (parley) and the plugins"
  swift build -c release --product parley >"$OUT/cluster-build.log" 2>&1 || { say "release build failed: $OUT/cluster-build.log"; exit 1; }
  make --no-print-directory plugins >/dev/null 2>&1 || { say "plugins did not build"; exit 1; }
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { say "nginx not found (scripts/deps.sh test installs it)"; exit 1; }

# Pin the services scripts/with-services.sh started (new PostgreSQL backends inherit the postmaster's CPU set).
POSTMASTER=$(head -1 "$PARLEY_TEST_POSTGRES_DATA/postmaster.pid")
for p in "$POSTMASTER" $(pgrep -P "$POSTMASTER") $(pgrep -f "redis-server 127.0.0.1:$PARLEY_TEST_REDIS_PORT"); do
  taskset -a -p -c "$PIN_SERVER" "$p" >/dev/null 2>&1 || true
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# CPU ticks (utime+stime) of processes matching a pattern, summed.
ticks() { local sum=0 t; for p in "$@"; do t=$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0); sum=$((sum + t)); done; echo $sum; }
pg_pids() { echo "$POSTMASTER"; pgrep -P "$POSTMASTER"; }
redis_pids() { pgrep -f "redis-server 127.0.0.1:$PARLEY_TEST_REDIS_PORT"; }

node_config() { # node_config FILE NODE_ID STORE ADAPTER
  local store adapter=""
  case $3 in
    sqlite) store="store:\n  type: sqlite\n  path: $WORK/$2.db";;
    pg) store="store:\n  type: postgres\n  url: $PARLEY_TEST_POSTGRES_URL\n  schema: bench_$STAMP_SCHEMA\n  pool_size: 8";;
  esac
  [ "$4" = redis ] && adapter="adapter:\n  type: redis\n  url: $PARLEY_TEST_REDIS_URL"
  printf "server:\n  node_id: %s\nchannels:\n  socketio:\n    session_persistence: true\n    rate_limit:\n      messages_per_second: 0\nagents:\n  - name: mirror\n    plugin: %s\n%b\n%b\n" \
    "$2" "$ROOT/build/plugins/libmirror.so" "$store" "$adapter" >"$1"
}

NODE_PIDS=() NGINX_PID=""
stop_all() {
  for p in "${NODE_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${NODE_PIDS[@]}"; do wait "$p" 2>/dev/null; done
  [ -n "$NGINX_PID" ] && { kill "$NGINX_PID" 2>/dev/null; wait "$NGINX_PID" 2>/dev/null; }
  NODE_PIDS=() NGINX_PID=""
}
trap 'stop_all; rm -rf "$WORK"' EXIT

start_node() { # start_node ID STORE ADAPTER -> port in $STARTED
  local port; port=$(free_port)
  node_config "$WORK/$1.yml" "$1" "$2" "$3"
  taskset -c "$PIN_SERVER" "$REL/parley" serve --config "$WORK/$1.yml" --port "$port" >"$WORK/$1.log" 2>&1 &
  NODE_PIDS+=($!)
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && { STARTED=$port; return 0; }
    sleep 0.1
  done
  say "node $1 did not start: $(tail -3 "$WORK/$1.log")"; return 1
}

start_nginx() { # start_nginx PORT1 PORT2 -> front port in $STARTED
  local front; front=$(free_port)
  mkdir -p "$WORK/nginx"
  sed -e "s#127.0.0.1:5101;#127.0.0.1:$1;#; s#127.0.0.1:5102;#127.0.0.1:$2;#" \
      -e "/127.0.0.1:5103;/d" -e "s#listen 127.0.0.1:8080;#listen 127.0.0.1:$front;#" -e "s#/tmp/parley-nginx#$WORK/nginx#g" \
      -e 's#access_log [^;]*;#access_log off;#' \
      examples/cluster/nginx-sid.conf >"$WORK/nginx.conf"
  taskset -c "$PIN_SERVER" "$NGINX" -c "$WORK/nginx.conf" -p "$WORK/nginx" >/dev/null 2>&1 &
  NGINX_PID=$!
  for _ in $(seq 1 50); do curl -s "http://127.0.0.1:$front/" >/dev/null 2>&1 && { STARTED=$front; return 0; }; sleep 0.1; done
  say "nginx did not start"; return 1
}

for rep in $(seq 1 "$REPS"); do
  for setup in $SETUPS; do
    STAMP_SCHEMA="${setup//-/_}_${rep}_$(date +%s%N | tail -c 7)"
    case $setup in
      sqlite) start_node n1 sqlite none || continue; target=$STARTED;;
      pg) start_node n1 pg none || continue; target=$STARTED;;
      pg-redis) start_node n1 pg redis || continue; target=$STARTED;;
      2nodes) start_node n1 pg redis || continue; p1=$STARTED; start_node n2 pg redis || continue; p2=$STARTED
              start_nginx "$p1" "$p2" || continue; target=$STARTED;;
    esac
    nginx_pids=""
    if [ -n "$NGINX_PID" ]; then nginx_pids="$NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' ')"; fi
    t0_nodes=$(ticks "${NODE_PIDS[@]}") t0_pg=$(ticks $(pg_pids)) t0_redis=$(ticks $(redis_pids)) t0_nginx=$(ticks $nginx_pids)
    J=$(timeout 300 taskset -c "$PIN_GEN" "$REL/parley" loadtest rtt -c "$S2_C" -d "$DUR" -w "$WARM" -p "$target" 2>/dev/null)
    t1_nodes=$(ticks "${NODE_PIDS[@]}") t1_pg=$(ticks $(pg_pids)) t1_redis=$(ticks $(redis_pids)) t1_nginx=$(ticks $nginx_pids)
    stop_all
    python3 - "$J" "$setup" "$rep" "$((t1_nodes - t0_nodes))" "$((t1_pg - t0_pg))" "$((t1_redis - t0_redis))" "$((t1_nginx - t0_nginx))" "$(getconf CLK_TCK)" "$DUR" "$WARM" >>"$JSONL" <<'EOF'
import json, sys
j = json.loads(sys.argv[1] or "{}")
setup, rep, nodes, pg, redis, nginx, hz, dur, warm = sys.argv[2], int(sys.argv[3]), *map(int, sys.argv[4:9]), float(sys.argv[9]), float(sys.argv[10])
# CPU was sampled over warm-up + measurement: divide by every reply in that time (msgs/s x (dur + warm)).
msgs = (j.get("msgs_per_s") or 0) * (dur + warm)
us = lambda t: round(t / hz * 1e6 / msgs, 1) if msgs else None
print(json.dumps({"setup": setup, "rep": rep, "msgs_per_s": j.get("msgs_per_s"), "p99_us": j.get("lat_us", {}).get("p99"),
                  "errors": j.get("errors"), "cpu_us_per_msg": {"nodes": us(nodes), "postgres": us(pg), "redis": us(redis), "nginx": us(nginx)}}))
EOF
    say "$(tail -1 "$JSONL")"
  done
done

python3 - "$JSONL" >bench/cluster-results.md <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("# Cluster S2 on loopback (`make bench-cluster`)\n")
print("100 clients echoing through the C mirror agent; everything serving pinned to one CPU, the generator to the other;")
print("medians of the repetitions. CPU per message from /proc (user+system), over warm-up and measurement.\n")
print("| setup | msgs/s | p99 | Parley nodes µs/msg | PostgreSQL µs/msg | Redis µs/msg | nginx µs/msg | errors |")
print("|---|---|---|---|---|---|---|---|")
names = {"sqlite": "1 node, SQLite", "pg": "1 node, PostgreSQL", "pg-redis": "1 node, PostgreSQL + Redis", "2nodes": "2 nodes + nginx, PostgreSQL + Redis"}
for setup in ["sqlite", "pg", "pg-redis", "2nodes"]:
    rs = [r for r in rows if r["setup"] == setup and r.get("msgs_per_s")]
    if not rs:
        continue
    med = lambda f: statistics.median([f(r) for r in rs if f(r) is not None] or [0])
    print(f"| {names[setup]} | {med(lambda r: r['msgs_per_s']):,.0f} | {med(lambda r: r['p99_us'])/1000:.1f} ms | "
          f"{med(lambda r: r['cpu_us_per_msg']['nodes']):.1f} | {med(lambda r: r['cpu_us_per_msg']['postgres']):.1f} | "
          f"{med(lambda r: r['cpu_us_per_msg']['redis']):.1f} | {med(lambda r: r['cpu_us_per_msg']['nginx']):.1f} | {sum(r['errors'] or 0 for r in rs)} |")
EOF
cat bench/cluster-results.md
