#!/usr/bin/env bash
# Disk, RSS and put rate as retained data grows (shard log purging, issue 9): starts
# `spate dev --unthrottled` on a fresh data dir, runs WINDOWS back-to-back put-records windows
# of 30 s (8 clients x 500 x 1 KiB, 4 shards; the records stay retained), and after each
# prints the put rate, the data dir size (3 nodes), the process's peak RSS (3 nodes in one
# process) and, from node 0's /v1/shards, the Raft log entries it still keeps.
#
#   scripts/bench-log-purge.sh [spate binary] [label] [windows]
set -euo pipefail
BIN="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/spate/target}/debug/spate}"
LABEL="${2:-spate}"
WINDOWS="${3:-4}"
BENCH="${BENCH_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/spate/target}/debug/spate-bench}"
PORT="${PORT:-45670}"
DATA="$(mktemp -d "${TMPDIR:-/tmp}/spate-purge-bench.XXXXXX")"
"$BIN" dev --unthrottled --port "$PORT" --data-dir "$DATA" > "$DATA.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA" "$DATA.log"' EXIT
for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$((PORT + 10))/ready" >/dev/null && break; sleep 0.2; done
for w in $(seq 1 "$WINDOWS"); do
  line="$("$BENCH" put-records --endpoint "http://127.0.0.1:$PORT" --label "$LABEL" --shards 4 \
    --duration-secs 30 --max-requests 100000 --record-size 1024 2>/dev/null)"
  rate="$(echo "$line" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["mib_per_sec"], "MiB/s,", d["errors"], "errors")')"
  logs="$(curl -s "http://127.0.0.1:$((PORT + 10))/v1/shards" | python3 -c 'import json,sys
d = json.load(sys.stdin)
print("log entries kept", sum(s.get("log_last", s["last_applied"]) - s.get("log_purged", 0) for s in d),
      "of", sum(s["last_applied"] for s in d), "applied; records", sum(s["next_ordinal"] - 1 for s in d))')"
  echo "$LABEL window $w: $rate | data dir $(du -sm "$DATA" | cut -f1) MiB | peak RSS $(awk '/VmHWM/ {print int($2/1024)}' /proc/$PID/status) MiB | node 0: $logs"
done
