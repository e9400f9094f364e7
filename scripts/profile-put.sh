#!/usr/bin/env bash
# Server CPU-seconds per MiB written by PutRecords (issue 9's profiling measure), robust to a
# loaded machine: wall-clock throughput moves with the load, CPU per MiB much less.
#
#   scripts/profile-put.sh [SPATE_BIN] [REQUESTS] [PERF]
#
# Starts `spate dev --unthrottled` on a fresh data dir, creates a 4-shard stream with a
# 40-request warm-up, then sends REQUESTS [400] PutRecords of 500 x 1 KiB from 8 clients
# (spate-bench) to node 0 and prints one JSON line: MiB written, server CPU seconds
# (utime+stime of the one process holding all three nodes), CPU-s per MiB, peak RSS, and
# the bytes written to disk per MiB of records (/proc/PID/io write_bytes).
# PERF=1 also records a cpu-clock profile with DWARF call graphs (perf.data in the output
# dir; read it with `perf report --children --sort sym -g none`).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spate/target}"
BIN="${1:-$CARGO_TARGET_DIR/debug/spate}"; N="${2:-400}"; PERF="${3:-0}"
BENCH="$CARGO_TARGET_DIR/debug/spate-bench"
[ -x "$BIN" ] && [ -x "$BENCH" ] || { echo "build first: cargo build -p spate-node -p spate-cluster-tests" >&2; exit 1; }
OUT="${PROFILE_OUT:-$HOME/.cache/spate/profile/$(date -u +%Y%m%dT%H%M%SZ)}"; mkdir -p "$OUT"
PORT=$((30000 + RANDOM % 10000))
DATA="$(mktemp -d)"
"$BIN" dev --unthrottled --port "$PORT" --data-dir "$DATA" > "$OUT/server.log" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$((PORT + 10))/ready" >/dev/null 2>&1 && break; sleep 0.1
done
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
written() { awk '/^write_bytes/{print $2}' "/proc/$PID/io"; }
bench() { "$BENCH" put-records --endpoint "http://127.0.0.1:$PORT" --stream s --shards 4 --clients 8 "$@"; }
bench --duration-secs 60 --max-requests 40 > "$OUT/warm.json" 2> "$OUT/warm.err"
c0="$(cpu)"; w0="$(written)"
if [ "$PERF" = 1 ]; then
  perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$PID" -o "$OUT/perf.data" 2> "$OUT/perf.err" &
  PP=$!; sleep 0.5
fi
bench --duration-secs 300 --max-requests "$N" > "$OUT/run.json" 2> "$OUT/run.err"
c1="$(cpu)"; w1="$(written)"
if [ "$PERF" = 1 ]; then kill -INT "$PP"; wait "$PP" || true; fi
HWM="$(awk '/VmHWM/{print $2}' "/proc/$PID/status")"
python3 - "$OUT/run.json" "$c0" "$c1" "$HWM" "$w0" "$w1" <<'PY'
import json, os, sys
d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
cpu = (float(sys.argv[3]) - float(sys.argv[2])) / os.sysconf("SC_CLK_TCK")
mib = d["mib_per_sec"] * d["duration_secs"]
print(json.dumps({"mib": round(mib, 1), "server_cpu_s": round(cpu, 2),
                  "cpu_s_per_mib": round(cpu / mib, 4), "mib_per_cpu_s": round(mib / cpu, 2),
                  "mib_per_s": d["mib_per_sec"], "p50_ms": d["p50_ms"],
                  "failed_records": d["failed_records"], "errors": d["errors"],
                  "peak_rss_mib": round(int(sys.argv[4]) / 1024, 1),
                  # Bytes the three nodes sent to disk per MiB of records (WAL, flushes,
                  # compactions; counted when pages are dirtied).
                  "disk_mib_per_mib": round((int(sys.argv[6]) - int(sys.argv[5])) / 2**20 / mib, 2)}))
PY
echo "profile-put.sh: output in $OUT" >&2
