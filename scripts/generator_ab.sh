#!/bin/bash
# A/B of the load generator itself: one server, two `parley` binaries as generators, alternating runs.
#   GEN_OLD=/tmp/parley-before GEN_NEW=.build/release/parley scripts/generator_ab.sh node rtt -c 100 -d 5 -w 1
# Servers: node (bench/.node-sio, built by make bench), echo (NIOEchoBench), parley (examples/mirror-memory.yml);
# release builds; server on CPU 0, generator on CPU 1. Prints msgs/s (or sessions/s), p50, p99, generator CPU.
set -u
cd "$(dirname "$0")/.."
: "${GEN_OLD:?path of the first generator binary}" "${GEN_NEW:?path of the second generator binary}"
srv=$1; shift
case $srv in
  node) taskset -c 0 node bench/.node-sio/server.mjs --port 18950 >/tmp/genab-srv.log 2>&1 & proto=sio;;
  echo) taskset -c 0 .build/release/NIOEchoBench 18950 127.0.0.1 1 >/tmp/genab-srv.log 2>&1 & proto=raw;;
  parley) taskset -c 0 .build/release/parley serve --config examples/mirror-memory.yml --port 18950 >/tmp/genab-srv.log 2>&1 & proto=sio;;
esac
SPID=$!
sleep 2
for rep in 1 2 3; do
  for g in old new; do
    if [ $g = old ]; then GEN=$GEN_OLD; else GEN=$GEN_NEW; fi
    J=$(taskset -c 1 "$GEN" loadtest "$@" -p 18950 --proto $proto --pid $SPID 2>/dev/null)
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(sys.argv[2], d.get("msgs_per_s", d.get("sessions_per_s")), "p50", d["lat_us"]["p50"], "p99", d["lat_us"]["p99"], "gen_cpu", d["gen_cpu_pct"], "errors", d["errors"])' "$J" $g
  done
done
kill $SPID; wait $SPID 2>/dev/null
