#!/usr/bin/env bash
# A real Kinesis Client Library consumer against Spate: kcl-rs (PyPI; the Rust port of the KCL,
# Python bindings) with dynalite (npm; a DynamoDB implementation, in memory, on 127.0.0.1) as
# its lease store, in polling mode and in enhanced fan-out mode (over http:// and over TLS,
# where it uses HTTP/2; the runs go at once, each on its own stream and lease table), across a
# shard split. See kcl_split.py for the checks.
#
#   tests/kcl/run.sh [http://127.0.0.1:PORT]
#
# With an endpoint (tests/clients/run.sh passes its server's), that server is used; without
# one a fresh `spate dev` is started here and stopped afterwards.
#
# Env:
#   SPATE_BIN        spate binary when a server is started here (default $CARGO_TARGET_DIR/debug/spate)
#   SPATE_VENV       the Python venv shared with tests/clients (default $HOME/.cache/spate/venv);
#                    kcl-rs is pinned in tests/clients/requirements.txt
#   SPATE_NPM_KCL    where dynalite is installed (default $HOME/.cache/spate/npm-kcl)
#   KCL_RUNS         runs (default "polling fanout fanout-tls"; fanout-tls needs the TLS
#                    endpoint: SPATE_TLS_ENDPOINT + SPATE_DEV_CA, or a server started here)
#   KCL_WAIT_SECS    bound on each wait inside a run (default 120)
#
# Prints one PASS/FAIL line per check and "kcl: N passed, M failed"; exit status 0 only if
# every check of every run passed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(git -C "$HERE" rev-parse --show-toplevel)"
VENV="${SPATE_VENV:-$HOME/.cache/spate/venv}"
NPM_DIR="${SPATE_NPM_KCL:-$HOME/.cache/spate/npm-kcl}"
DYNALITE_VERSION="4.0.0"
RUNS="${KCL_RUNS:-polling fanout fanout-tls}"

die() { echo "kcl/run.sh: ERROR: $*" >&2; exit 1; }

# ---------------------------------------------------------------- venv (shared with tests/clients)
REQ="$REPO/tests/clients/requirements.txt"
REQ_HASH="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.spate-req-hash" 2>/dev/null || true)" != "$REQ_HASH" ]; then
  echo "kcl/run.sh: preparing venv $VENV" >&2
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ" || die "pip install -r $REQ failed"
  echo "$REQ_HASH" > "$VENV/.spate-req-hash"
fi
PY="$VENV/bin/python"
"$PY" -c 'import kcl_rs, boto3' || die "kcl_rs or boto3 missing from $VENV (see $REQ)"

# ---------------------------------------------------------------- dynalite (npm)
command -v node >/dev/null && command -v npm >/dev/null || die "node and npm are required (scripts/setup.sh installs them)"
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
[ "$NODE_MAJOR" -ge 20 ] || die "dynalite $DYNALITE_VERSION needs Node.js >= 20, found $(node --version)"
if [ "$(cat "$NPM_DIR/.spate-dynalite-version" 2>/dev/null || true)" != "$DYNALITE_VERSION" ]; then
  echo "kcl/run.sh: installing dynalite@$DYNALITE_VERSION into $NPM_DIR" >&2
  mkdir -p "$NPM_DIR"
  [ -f "$NPM_DIR/package.json" ] || echo '{"name":"spate-kcl-tests","private":true}' > "$NPM_DIR/package.json"
  (cd "$NPM_DIR" && timeout 300 npm install --no-audit --no-fund --loglevel=error "dynalite@$DYNALITE_VERSION") \
    || die "npm install dynalite@$DYNALITE_VERSION failed"
  echo "$DYNALITE_VERSION" > "$NPM_DIR/.spate-dynalite-version"
fi
[ -f "$NPM_DIR/node_modules/dynalite/cli.js" ] || die "dynalite not found under $NPM_DIR"

# ---------------------------------------------------------------- processes
WORKDIR="$(mktemp -d /tmp/spate-kcl.XXXXXX)"
SERVER_PID=""
DYN_PID=""
STATUS=1

stop() {
  local pid="$1"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop "$DYN_PID"
  stop "$SERVER_PID"
  if [ "$STATUS" -ne 0 ]; then
    for f in "$WORKDIR"/server.log "$WORKDIR"/dynalite.log; do
      [ -s "$f" ] && { echo "---- last 40 lines of $f" >&2; tail -n 40 "$f" >&2; }
    done
    rm -rf "$WORKDIR/data"
    echo "kcl/run.sh: logs kept in $WORKDIR" >&2
  else
    rm -rf "$WORKDIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port OFFSET...: a base port P with every P+OFFSET free on 127.0.0.1
free_port() {
  "$PY" - "$@" <<'PY'
import random, socket, sys
offs = [int(a) for a in sys.argv[1:]] or [0]
for _ in range(200):
    p = random.randint(20000, 50000)
    socks = []
    try:
        for o in offs:
            s = socket.socket(); s.bind(("127.0.0.1", p + o)); socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks: s.close()
    print(p); sys.exit(0)
sys.exit("no free port found")
PY
}

# wait_http URL PID WHAT: until URL answers (any HTTP status) or PID exits, at most 60 s
wait_http() {
  "$PY" - "$1" "$2" "$3" <<'PY'
import os, sys, time, urllib.request, urllib.error
url, pid, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
deadline = time.time() + 60
while time.time() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("%s exited before becoming ready" % what)
    try:
        urllib.request.urlopen(url, timeout=2)
        sys.exit(0)
    except urllib.error.HTTPError:
        sys.exit(0)  # it answered
    except Exception:
        time.sleep(0.2)
sys.exit("%s not ready at %s after 60s" % (what, url))
PY
}

EP="${1:-}"
if [ -n "$EP" ]; then
  case "$EP" in
    http://127.0.0.1:*|http://localhost:*) ;;
    *) die "endpoint must be http://127.0.0.1:PORT, got $EP" ;;
  esac
else
  BIN="${SPATE_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/spate/target}/debug/spate}"
  [ -x "$BIN" ] || die "spate binary not found at $BIN (cargo build -p spate-node --bin spate, or set SPATE_BIN)"
  PORT="$(free_port 0 1 2 10 11 12 20 21 22 30 31 32)"
  "$BIN" dev --port "$PORT" --data-dir "$WORKDIR/data" --fresh >"$WORKDIR/server.log" 2>&1 &
  SERVER_PID=$!
  wait_http "http://127.0.0.1:$((PORT + 10))/ready" "$SERVER_PID" "spate dev" || die "spate dev did not start"
  EP="http://127.0.0.1:$PORT"
  echo "kcl/run.sh: started spate dev (pid $SERVER_PID) at $EP"
fi

DYN_PORT="$(free_port 0)"
node "$NPM_DIR/node_modules/dynalite/cli.js" --host 127.0.0.1 --port "$DYN_PORT" --createTableMs 50 --deleteTableMs 50 \
  >"$WORKDIR/dynalite.log" 2>&1 &
DYN_PID=$!
wait_http "http://127.0.0.1:$DYN_PORT/" "$DYN_PID" "dynalite" || die "dynalite did not start"
echo "kcl/run.sh: dynalite $DYNALITE_VERSION (pid $DYN_PID) at http://127.0.0.1:$DYN_PORT; kcl-rs $("$PY" -c 'import importlib.metadata as m; print(m.version("kcl-rs"))'); Kinesis at $EP"

# ---------------------------------------------------------------- the consumers, all at once
# Each run: its own stream and lease table. fanout-tls subscribes over TLS, where kcl-rs
# negotiates HTTP/2 (ALPN h2); over http:// it speaks HTTP/1.1 (chunked event stream).
TLS_EP="${SPATE_TLS_ENDPOINT:-}"
TLS_CA="${SPATE_DEV_CA:-}"
if [ -n "$SERVER_PID" ]; then
  TLS_EP="https://localhost:$((PORT + 30))"
  TLS_CA="$WORKDIR/data/tls/ca.pem"
fi
t0=$(date +%s)
ran=()
pids=()
for run in $RUNS; do
  case "$run" in
    polling) mode=POLLING; ep="$EP" ;;
    fanout) mode=FANOUT; ep="$EP" ;;
    fanout-tls) mode=FANOUT; ep="$TLS_EP" ;;
    *) die "unknown run '$run' in KCL_RUNS (polling, fanout, fanout-tls)" ;;
  esac
  if [ "$run" = fanout-tls ] && { [ -z "$TLS_EP" ] || [ ! -f "$TLS_CA" ]; }; then
    echo "kcl/run.sh: no TLS endpoint known (SPATE_TLS_ENDPOINT/SPATE_DEV_CA), fanout-tls skipped"
    continue
  fi
  (
    if [ "$run" = fanout-tls ]; then
      # boto3 trusts AWS_CA_BUNDLE, kcl-rs (rustls, native roots) SSL_CERT_FILE; the h2 client
      # logs one line per HTTP/2 connection, which proves the protocol below.
      export AWS_CA_BUNDLE="$TLS_CA" SSL_CERT_FILE="$TLS_CA" RUST_LOG="error,h2::client=debug"
    fi
    SPATE_ENDPOINT="$ep" DYNALITE_ENDPOINT="http://127.0.0.1:$DYN_PORT" PYTHONDONTWRITEBYTECODE=1 \
      exec timeout 300 "$PY" "$HERE/kcl_split.py" --mode "$mode" --label "$run"
  ) >"$WORKDIR/$run.out" 2>&1 &
  pids+=($!)
  ran+=("$run")
done
rc_all=0
for i in "${!ran[@]}"; do
  run="${ran[$i]}"
  rc=0; wait "${pids[$i]}" || rc=$?
  if [ "$run" = fanout-tls ]; then
    if sed 's/\x1b\[[0-9;]*m//g' "$WORKDIR/$run.out" | grep -q 'h2::client: client connection bound'; then
      echo "PASS $run: kcl-rs negotiated HTTP/2 over TLS" >>"$WORKDIR/$run.out"
    else
      echo "FAIL $run: no HTTP/2 connection seen in kcl-rs's log" >>"$WORKDIR/$run.out"
    fi
  fi
  echo "---------------- kcl-rs $run (exit $rc)"
  sed 's/\x1b\[[0-9;]*m//g' "$WORKDIR/$run.out" | grep -v ' h2::client: '
  [ "$rc" -eq 0 ] || rc_all=1
done
passed=$(cat "$WORKDIR"/*.out | grep -c '^PASS ' || true)
failed=$(cat "$WORKDIR"/*.out | grep -c '^FAIL ' || true)
echo "kcl/run.sh: finished in $(( $(date +%s) - t0 ))s"
echo "kcl: $passed passed, $failed failed"
if [ "$rc_all" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]; then
  STATUS=0
fi
exit "$STATUS"
