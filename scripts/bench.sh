#!/usr/bin/env bash
# Benchmark: spate (`spate dev`, a 3-node cluster in one process) against kinesalite, on
# 127.0.0.1 only, with the spate-bench load generator (cluster-tests/src/bin/spate-bench.rs).
#
#   scripts/bench.sh                     # 3 repetitions, both targets
#   REPS=1 TARGETS=kinesalite scripts/bench.sh
#
# For each repetition the targets run in alternating order, each on a fresh server (fresh
# data dir for spate), through the scenarios put-records (C=8, 500 x 1 KiB), put-record
# (C=1), put-record at C=256 connections, put-get, get-records (one shard pre-filled with
# GR_FILL_MIB, read from TRIM_HORIZON), retained (put-records on a stream already holding
# RETAINED_RECORDS small records) and, for spate only (kinesalite has no enhanced fan-out),
# efo. Server CPU seconds (/proc/<pid>/stat utime+stime, per scenario) and
# peak RSS (/proc/<pid>/status VmHWM) are recorded. Disk fdatasync latency is measured once
# with fio. Prints a markdown table of medians and spate/kinesalite ratios.
#
# Env knobs (defaults in brackets):
#   REPS [3]  TARGETS ["spate kinesalite"]  DURATION [10] seconds per scenario
#   SHARDS [4]  RECORD_SIZE [1024]  PR_CLIENTS [8] (put-records)  P1_CLIENTS [1] (put-record)
#   P2G_RATE [200] records/s  P2G_POLL_MS [0]  MAX_REQUESTS [200000]
#   EFO_RATE [100] records/s (efo: SubscribeToShard put-to-delivery)
#   PMANY_CLIENTS [256] (put-record at many connections)  GR_FILL_MIB [64] (get-records)
#   RETAINED_RECORDS [1000000] of RETAINED_SIZE [64] bytes (retained)
#   CARGO_TARGET_DIR [$HOME/.cache/spate/target]  SPATE_BIN [$CARGO_TARGET_DIR/debug/spate]
#   BENCH_BIN [$CARGO_TARGET_DIR/debug/spate-bench]
#   SKIP_BUILD=1  skip `cargo build`     SKIP_FIO=1  skip the fio measurement
#   SPATE_ALL_NODES=1  spread spate's clients over nodes 0..2 (ports P, P+1, P+2); put-get
#                      then writes via node 0 and reads via node 2
#   BENCH_OUT [$HOME/.cache/spate/bench/<utc time>]  results (JSON lines, logs, table)
#   BENCH_DATA_ROOT [$HOME/.cache/spate/bench-data]  where server data dirs and the fio file go
#   KINESALITE_DIR [$HOME/.cache/spate/kinesalite]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spate/target}"
REPS="${REPS:-3}"
TARGETS="${TARGETS:-spate kinesalite}"
DURATION="${DURATION:-10}"
SHARDS="${SHARDS:-4}"
RECORD_SIZE="${RECORD_SIZE:-1024}"
PR_CLIENTS="${PR_CLIENTS:-8}"
P1_CLIENTS="${P1_CLIENTS:-1}"
P2G_RATE="${P2G_RATE:-200}"
P2G_POLL_MS="${P2G_POLL_MS:-0}"
EFO_RATE="${EFO_RATE:-100}"
PMANY_CLIENTS="${PMANY_CLIENTS:-256}"
GR_FILL_MIB="${GR_FILL_MIB:-64}"
RETAINED_RECORDS="${RETAINED_RECORDS:-1000000}"
RETAINED_SIZE="${RETAINED_SIZE:-64}"
MAX_REQUESTS="${MAX_REQUESTS:-200000}"
SPATE_BIN="${SPATE_BIN:-$CARGO_TARGET_DIR/debug/spate}"
BENCH_BIN="${BENCH_BIN:-$CARGO_TARGET_DIR/debug/spate-bench}"
KINESALITE_DIR="${KINESALITE_DIR:-$HOME/.cache/spate/kinesalite}"
KINESALITE="$KINESALITE_DIR/node_modules/.bin/kinesalite"
OUT="${BENCH_OUT:-$HOME/.cache/spate/bench/$(date -u +%Y%m%dT%H%M%SZ)}"
DATA_ROOT="${BENCH_DATA_ROOT:-$HOME/.cache/spate/bench-data}"
RESULTS="$OUT/results.jsonl"
CLK_TCK="$(getconf CLK_TCK)"

die() { echo "bench.sh: ERROR: $*" >&2; exit 1; }
log() { echo "bench.sh: $*" >&2; }

for t in $TARGETS; do
  case "$t" in spate|kinesalite) ;; *) die "unknown target '$t' (spate, kinesalite)";; esac
done
mkdir -p "$OUT" "$DATA_ROOT"
: > "$RESULTS"

# ---------------------------------------------------------------- build / install
if [ "${SKIP_BUILD:-0}" != "1" ]; then
  if [[ " $TARGETS " == *" spate "* ]]; then
    log "cargo build -p spate-node -p spate-cluster-tests (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$REPO" && cargo build -p spate-node -p spate-cluster-tests) || die "cargo build failed"
  else
    log "cargo build -p spate-cluster-tests (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$REPO" && cargo build -p spate-cluster-tests) || die "cargo build failed"
  fi
fi
[ -x "$BENCH_BIN" ] || die "load generator not found at $BENCH_BIN"
if [[ " $TARGETS " == *" spate "* ]]; then
  [ -x "$SPATE_BIN" ] || die "spate binary not found at $SPATE_BIN"
fi
if [[ " $TARGETS " == *" kinesalite "* ]] && [ ! -x "$KINESALITE" ]; then
  command -v npm >/dev/null || die "npm is needed to install kinesalite"
  log "installing kinesalite into $KINESALITE_DIR"
  npm install --silent --prefix "$KINESALITE_DIR" kinesalite >&2 || die "npm install kinesalite failed"
  [ -x "$KINESALITE" ] || die "kinesalite not found at $KINESALITE after npm install"
fi

# ---------------------------------------------------------------- fio: fdatasync latency
FIO_P50="n/a"; FIO_P99="n/a"
if [ "${SKIP_FIO:-0}" != "1" ]; then
  if ! command -v fio >/dev/null; then
    if [ "$(id -u)" = "0" ]; then
      log "installing fio (apt-get)"
      { apt-get install -y -q fio >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q fio >/dev/null 2>&1; }; } \
        || die "apt-get install fio failed (set SKIP_FIO=1 to skip)"
    else
      die "fio is not installed and we are not root (apt-get install fio, or SKIP_FIO=1)"
    fi
  fi
  FIO_DIR="$DATA_ROOT/fio"; mkdir -p "$FIO_DIR"
  log "fio: 4 KiB writes + fdatasync on $(df -P "$FIO_DIR" | awk 'NR==2{print $1" ("$6")"}')"
  fio --name=fdatasync --directory="$FIO_DIR" --rw=write --bs=4k --size=4m --ioengine=sync \
      --fdatasync=1 --runtime=10 --output-format=json > "$OUT/fio.json" 2> "$OUT/fio.err" \
    || die "fio failed: $(tail -n 3 "$OUT/fio.err")"
  rm -rf "$FIO_DIR"
  read -r FIO_P50 FIO_P99 < <(python3 - "$OUT/fio.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
p = j["sync"]["lat_ns"]["percentile"]
print("%.3f %.3f" % (p["50.000000"] / 1e6, p["99.000000"] / 1e6))
PY
)
  log "fio fdatasync p50 ${FIO_P50} ms, p99 ${FIO_P99} ms"
  echo "{\"scenario\":\"fio\",\"fdatasync_p50_ms\":$FIO_P50,\"fdatasync_p99_ms\":$FIO_P99}" >> "$RESULTS"
fi

# ---------------------------------------------------------------- server control
SERVER_PID=""; SERVER_DATA=""
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      log "server $SERVER_PID ignored SIGTERM for 10s; killing it"
      kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
  [ -z "$SERVER_DATA" ] || rm -rf "$SERVER_DATA"
  SERVER_DATA=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 - <<'PY'
import random, socket, sys
for _ in range(200):
    p = random.randint(20000, 50000)
    socks = []
    try:
        for q in (p, p + 1, p + 2, p + 10, p + 11, p + 12, p + 20, p + 21, p + 22):
            s = socket.socket(); s.bind(("127.0.0.1", q)); socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks: s.close()
    print(p); sys.exit(0)
sys.exit("no free port range")
PY
}

# pid and its descendants
pids_of() {
  local p="$1" c
  echo "$p"
  for c in $(pgrep -P "$p" 2>/dev/null || true); do pids_of "$c"; done
}

# CPU seconds (utime+stime) summed over the server's processes
server_cpu() {
  local total=0 p f
  for p in $(pids_of "$SERVER_PID"); do
    f="$(cat /proc/"$p"/stat 2>/dev/null)" || continue
    f="${f##*) }"   # fields from 3 on; comm may contain spaces
    # shellcheck disable=SC2086
    set -- $f
    total=$((total + ${12} + ${13}))   # utime, stime = fields 14, 15
  done
  python3 -c "print(round($total / $CLK_TCK, 3))"
}

# peak RSS (VmHWM) in MiB summed over the server's processes
server_hwm_mib() {
  local total=0 p kb
  for p in $(pids_of "$SERVER_PID"); do
    kb="$(awk '/^VmHWM:/{print $2}' /proc/"$p"/status 2>/dev/null)" || continue
    total=$((total + ${kb:-0}))
  done
  python3 -c "print(round($total / 1024, 1))"
}

wait_tcp() {   # port, seconds
  local deadline=$((SECONDS + $2))
  while [ "$SECONDS" -lt "$deadline" ]; do
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  return 1
}

wait_ready() {   # admin port, seconds
  python3 - "$1" "$2" "$SERVER_PID" <<'PY'
import os, sys, time, urllib.request
port, secs, pid = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
deadline = time.time() + secs
while time.time() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("server exited")
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/ready" % port, timeout=2) as r:
            if r.status == 200: sys.exit(0)
    except Exception:
        pass
    time.sleep(0.05)
sys.exit("not ready after %ss" % secs)
PY
}

start_server() {   # target rep -> sets SERVER_PID, PORT, STARTUP_SECS
  local target="$1" rep="$2" t0
  PORT="$(free_port)"
  local logf="$OUT/server-$target-rep$rep.log"
  t0="$(date +%s.%N)"
  case "$target" in
    spate)
      SERVER_DATA="$(mktemp -d "$DATA_ROOT/spate.XXXXXX")"
      "$SPATE_BIN" dev --unthrottled --port "$PORT" --data-dir "$SERVER_DATA" > "$logf" 2>&1 &
      SERVER_PID=$!
      wait_ready $((PORT + 10)) 120 || { tail -n 40 "$logf" >&2; die "spate dev did not become ready"; }
      ;;
    kinesalite)
      "$KINESALITE" --port "$PORT" --createStreamMs 50 --deleteStreamMs 50 --updateStreamMs 50 --shardLimit 1000 > "$logf" 2>&1 &
      SERVER_PID=$!
      wait_tcp "$PORT" 60 || { tail -n 40 "$logf" >&2; die "kinesalite did not start listening"; }
      ;;
  esac
  STARTUP_SECS="$(python3 -c "import time; print(round(time.time() - $t0, 3))")"
  log "$target (rep $rep) up on 127.0.0.1:$PORT, pid $SERVER_PID, ${STARTUP_SECS}s"
}

BENCH_FAILED=0
run_scenario() {   # target rep scenario args...   (SCEN_AS=<name> renames it in the results)
  local target="$1" rep="$2" scen="$3"; shift 3
  local name="${SCEN_AS:-$scen}"
  local cpu0 cpu1 line
  cpu0="$(server_cpu)"
  local ep="http://127.0.0.1:$PORT"
  if [ "$target" = spate ] && [ "${SPATE_ALL_NODES:-0}" = "1" ]; then
    ep="$ep,http://127.0.0.1:$((PORT + 1)),http://127.0.0.1:$((PORT + 2))"
  fi
  if line="$("$BENCH_BIN" "$scen" --endpoint "$ep" --label "$target" \
        --shards "$SHARDS" --duration-secs "$DURATION" --max-requests "$MAX_REQUESTS" \
        --record-size "$RECORD_SIZE" "$@" 2>>"$OUT/bench-$target-rep$rep.err")"; then
    cpu1="$(server_cpu)"
    python3 - "$line" "$rep" "$cpu0" "$cpu1" "$name" >> "$RESULTS" <<'PY'
import json, sys
d = json.loads(sys.argv[1])
d["scenario"] = sys.argv[5]
d["rep"] = int(sys.argv[2])
d["server_cpu_secs"] = round(float(sys.argv[4]) - float(sys.argv[3]), 3)
print(json.dumps(d))
PY
    echo "$line"
  else
    BENCH_FAILED=1
    log "FAILED: $scen against $target (rep $rep): $(tail -n 3 "$OUT/bench-$target-rep$rep.err")"
    echo "{\"scenario\":\"$name\",\"label\":\"$target\",\"rep\":$rep,\"error\":true}" >> "$RESULTS"
  fi
  kill -0 "$SERVER_PID" 2>/dev/null || die "$target died during $scen (log: $OUT/server-$target-rep$rep.log)"
}

# ---------------------------------------------------------------- runs
read -r -a TARGET_LIST <<< "$TARGETS"
for rep in $(seq 1 "$REPS"); do
  order=("${TARGET_LIST[@]}")
  if [ $((rep % 2)) -eq 0 ] && [ "${#order[@]}" -eq 2 ]; then order=("${order[1]}" "${order[0]}"); fi
  for target in "${order[@]}"; do
    start_server "$target" "$rep"
    run_scenario "$target" "$rep" put-records --stream bench-put-records --clients "$PR_CLIENTS"
    run_scenario "$target" "$rep" put-record --stream bench-put-record --clients "$P1_CLIENTS"
    SCEN_AS=put-record-many run_scenario "$target" "$rep" put-record --stream bench-put-record-many --clients "$PMANY_CLIENTS"
    run_scenario "$target" "$rep" put-get --stream bench-put-get --rate "$P2G_RATE" --poll-ms "$P2G_POLL_MS"
    run_scenario "$target" "$rep" get-records --stream bench-get-records --clients 1 --fill-mib "$GR_FILL_MIB"
    run_scenario "$target" "$rep" retained --stream bench-retained --clients "$PR_CLIENTS" \
      --fill-records "$RETAINED_RECORDS" --fill-size "$RETAINED_SIZE"
    if [ "$target" = spate ]; then
      run_scenario "$target" "$rep" efo --stream bench-efo --rate "$EFO_RATE"
    fi
    echo "{\"scenario\":\"server\",\"label\":\"$target\",\"rep\":$rep,\"peak_rss_mib\":$(server_hwm_mib),\"cpu_secs_total\":$(server_cpu),\"startup_secs\":$STARTUP_SECS}" >> "$RESULTS"
    stop_server
  done
done

# ---------------------------------------------------------------- table
python3 - "$RESULTS" "$OUT/table.md" "$PMANY_CLIENTS" "$RETAINED_RECORDS" <<'PY' | tee "$OUT/table.md.tmp"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(target, scen, key, fn=None):
    vals = []
    for r in rows:
        if r.get("label") != target or r.get("scenario") != scen or r.get("error"):
            continue
        v = fn(r) if fn else r.get(key)
        if v is not None:
            vals.append(v)
    return (statistics.median(vals), len(vals)) if vals else (None, 0)
# a rate times the measured duration, per server CPU second spent in that scenario
per_cpu = lambda k: (lambda r: r[k] * r["duration_secs"] / r["server_cpu_secs"] if r.get("server_cpu_secs") else None)
metrics = [
    ("PutRecords MiB/s (C=PR, 500 x rec)", "put-records", "mib_per_sec", None),
    ("PutRecords records/s", "put-records", "records_per_sec", None),
    ("PutRecords request p50 (ms)", "put-records", "p50_ms", None),
    ("PutRecords request p99 (ms)", "put-records", "p99_ms", None),
    ("PutRecords MiB per server-CPU-s", "put-records", None, per_cpu("mib_per_sec")),
    ("PutRecords failed records + errors", "put-records", None, lambda r: r["failed_records"] + r["errors"]),
    ("PutRecords client CPU util", "put-records", "client_cpu_util", None),
    ("PutRecord p50 (ms)", "put-record", "p50_ms", None),
    ("PutRecord p99 (ms)", "put-record", "p99_ms", None),
    ("PutRecord p99.9 (ms)", "put-record", "p999_ms", None),
    ("PutRecord req/s", "put-record", "requests_per_sec", None),
    ("PutRecord req per server-CPU-s", "put-record", None, per_cpu("requests_per_sec")),
    ("PutRecord client CPU util", "put-record", "client_cpu_util", None),
    ("PutRecord req/s (C=PMANY connections)", "put-record-many", "requests_per_sec", None),
    ("PutRecord p99 (ms, C=PMANY)", "put-record-many", "p99_ms", None),
    ("PutRecord errors (C=PMANY)", "put-record-many", "errors", None),
    ("put-to-get p50 (ms)", "put-get", "p2g_p50_ms", None),
    ("put-to-get p99 (ms)", "put-get", "p2g_p99_ms", None),
    ("put ack p50 during p2g (ms)", "put-get", "put_p50_ms", None),
    ("p2g missing + duplicates", "put-get", None, lambda r: r["missing"] + r["duplicates"]),
    ("GetRecords polls/s during p2g", "put-get", "polls_per_sec", None),
    ("GetRecords MiB/s from one shard (TRIM_HORIZON)", "get-records", "mib_per_sec", None),
    ("GetRecords call p50 (ms)", "get-records", "p50_ms", None),
    ("PutRecords MiB/s with RETAINED records retained", "retained", "mib_per_sec", None),
    ("PutRecords failed + errors (retained)", "retained", None, lambda r: r["failed_records"] + r["errors"]),
    ("EFO put-to-delivery p50 (ms, from put start)", "efo", "p2d_p50_ms", None),
    ("EFO put-to-delivery p99 (ms, from put start)", "efo", "p2d_p99_ms", None),
    ("EFO ack-to-delivery p50 (ms)", "efo", "ack2d_p50_ms", None),
    ("EFO ack-to-delivery p99 (ms)", "efo", "ack2d_p99_ms", None),
    ("EFO missing + duplicates", "efo", None, lambda r: r["missing"] + r["duplicates"]),
    ("server peak RSS (VmHWM, MiB)", "server", "peak_rss_mib", None),
    ("server CPU s (whole run)", "server", "cpu_secs_total", None),
    ("start-up to listening/ready (s)", "server", "startup_secs", None),
]
targets = [t for t in ("spate", "kinesalite") if any(r.get("label") == t for r in rows)]
fio = [r for r in rows if r.get("scenario") == "fio"]
out = []
if fio:
    out.append("fio 4 KiB append + fdatasync: p50 %.3f ms, p99 %.3f ms\n" % (fio[0]["fdatasync_p50_ms"], fio[0]["fdatasync_p99_ms"]))
hdr = "| metric | " + " | ".join(targets) + (" | spate / kinesalite |" if len(targets) == 2 else " |")
out.append(hdr)
out.append("|" + "---|" * (hdr.count("|") - 1))
def fmt(v):
    if v is None:
        return "–"
    if float(v).is_integer() and abs(v) < 10:
        return "%d" % v
    return "%.3f" % v if abs(v) < 10 else "%.1f" % v if abs(v) < 1000 else "{:,.0f}".format(v)
for name, scen, key, fn in metrics:
    vals = [med(t, scen, key, fn) for t in targets]
    cells = ["%s (n=%d)" % (fmt(v), n) if v is not None else "–" for v, n in vals]
    line = "| %s | %s |" % (name, " | ".join(cells))
    if len(targets) == 2:
        a, b = vals[0][0], vals[1][0]
        line += " %s |" % ("%.2f×" % (a / b) if a is not None and b else "–")
    out.append(line)
# put rate with records retained, relative to the empty-stream rate of the same target
line = "| PutRecords rate retained ÷ empty |"
for t in targets:
    a, b = med(t, "retained", "mib_per_sec")[0], med(t, "put-records", "mib_per_sec")[0]
    line += " %s |" % ("%.2f" % (a / b) if a is not None and b else "–")
out.append(line + (" – |" if len(targets) == 2 else ""))
print("\n".join(out).replace("PMANY", sys.argv[3]).replace("RETAINED", "{:,}".format(int(sys.argv[4]))))
PY
mv "$OUT/table.md.tmp" "$OUT/table.md"
log "results: $RESULTS, table: $OUT/table.md"
[ "$BENCH_FAILED" -eq 0 ] || die "some scenarios failed (see $OUT/bench-*.err)"
