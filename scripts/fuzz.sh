#!/usr/bin/env bash
# make fuzz: builds the libFuzzer executable (Fuzz/, release, fuzzer + address sanitizers) and runs every target
# for FUZZ_SECONDS (default 60) from its seed corpus. Not part of make test (make test replays the committed
# inputs without the fuzzer). Findings land in .build-fuzz/artifacts/; copy each into
# Tests/fuzz/regressions/<target>/ with the fix.
#   FUZZ_SECONDS=300 make fuzz          longer runs
#   FUZZ_TARGETS="json socketio" make fuzz   some targets only
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
TARGETS=${FUZZ_TARGETS:-"engineio socketio json deflate config"}
OUT=.build-fuzz
(cd Fuzz && swift build -c release --sanitize=fuzzer --sanitize=address --scratch-path "../$OUT" --product parley-fuzz)
BIN=$(cd Fuzz && swift build -c release --sanitize=fuzzer --sanitize=address --scratch-path "../$OUT" --show-bin-path)/parley-fuzz
mkdir -p "$OUT/artifacts" "$OUT/logs"
status=0
for t in $TARGETS; do
  mkdir -p "$OUT/corpus/$t"
  echo "== fuzz $t for ${SECONDS_PER_TARGET}s"
  # One worker (the machine is small); 10 s per input is a hang; 2 GiB is a memory blow-up.
  if ! PARLEY_FUZZ_TARGET=$t "$BIN" "$OUT/corpus/$t" "Tests/fuzz/corpus/$t" \
      -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -artifact_prefix="$OUT/artifacts/$t-" -print_final_stats=1 > "$OUT/logs/$t.log" 2>&1; then
    echo "   FINDING in $t: see $OUT/logs/$t.log and $OUT/artifacts/$t-*"
    status=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$OUT/logs/$t.log" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$OUT/logs/$t.log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || echo "cov: ?")
  echo "   $t: $runs executions, $cov, corpus $(ls "$OUT/corpus/$t" | wc -l) inputs"
done
exit $status
