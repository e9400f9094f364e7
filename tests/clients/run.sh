#!/usr/bin/env bash
# Real-client API tests: boto3/pytest (tests/clients/test_*.py) and the AWS CLI acceptance
# walkthrough, against a fresh `spate dev` cluster on 127.0.0.1.
#
#   tests/clients/run.sh [extra pytest args]
#
# Env:
#   SPATE_BIN            spate binary (default $CARGO_TARGET_DIR or $HOME/.cache/spate/target, /debug/spate)
#   SPATE_ENDPOINT       if set, test this already-running endpoint (loopback only) and start no server
#   SHARED_DIR           where acceptance/cli_walkthrough.sh lives (default <repo>/../shared)
#   WALKTHROUGH_STRICT=1 require every walkthrough check to pass, not only walkthrough-required.txt
#   SKIP_WALKTHROUGH=1   run pytest only
#   SPATE_RESULTS_DIR    where the walkthrough output is saved (default $HOME/.cache/spate/results)
#   SPATE_VENV           the Python venv (default $HOME/.cache/spate/venv)
#   SPATE_NPM_DIR        where @aws-sdk/client-kinesis is installed (default $HOME/.cache/spate/npm)
#   SKIP_JS=1            skip the AWS SDK for JavaScript v3 checks (also skipped without node/npm)
#   SKIP_KCL=1           skip the KCL consumer checks (tests/kcl/run.sh: kcl-rs + dynalite)
#
# With a server started here, the TLS port (P+30, the dev CA under its data dir) is tested
# too (SPATE_TLS_ENDPOINT, SPATE_DEV_CA), and the JavaScript SDK runs over h2c and TLS.
#
# Exit status is non-zero if pytest fails, a required walkthrough check does not PASS,
# or (WALKTHROUGH_STRICT=1) any walkthrough check fails.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(git -C "$HERE" rev-parse --show-toplevel)"
VENV="${SPATE_VENV:-$HOME/.cache/spate/venv}"
RESULTS="${SPATE_RESULTS_DIR:-$HOME/.cache/spate/results}"
WALK="${SHARED_DIR:-$REPO/../shared}/acceptance/cli_walkthrough.sh"
REQUIRED="$HERE/walkthrough-required.txt"

die() { echo "run.sh: ERROR: $*" >&2; exit 1; }

# ---------------------------------------------------------------- venv
REQ_HASH="$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/pytest" ] || [ ! -x "$VENV/bin/aws" ] || [ "$(cat "$VENV/.spate-req-hash" 2>/dev/null || true)" != "$REQ_HASH" ]; then
  echo "run.sh: preparing venv $VENV" >&2
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt" || die "pip install failed"
  echo "$REQ_HASH" > "$VENV/.spate-req-hash"
fi
PY="$VENV/bin/python"

# ---------------------------------------------------------------- server
SERVER_PID=""
WORKDIR="$(mktemp -d /tmp/spate-clients.XXXXXX)"
LOG="$WORKDIR/server.log"
STATUS=1

cleanup() {
  local rc=$?
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "run.sh: server did not exit within 10s of SIGTERM; killing it" >&2
      kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [ "$STATUS" -ne 0 ] || [ "$rc" -ne 0 ]; then
    if [ -s "$LOG" ]; then
      echo "---------------- server log (last 80 lines of $LOG) ----------------" >&2
      tail -n 80 "$LOG" >&2 || true
      echo "--------------------------------------------------------------------" >&2
    fi
  fi
  if [ "$STATUS" -ne 0 ] && [ -s "$LOG" ]; then
    # keep the log for inspection; drop the data dir
    rm -rf "$WORKDIR/data"
    echo "run.sh: server log kept at $LOG" >&2
  else
    rm -rf "$WORKDIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${SPATE_ENDPOINT:-}" ]; then
  EP="$SPATE_ENDPOINT"
  case "$EP" in
    http://127.0.0.1:*|http://localhost:*) ;;
    *) die "SPATE_ENDPOINT must be http://127.0.0.1:PORT, got $EP" ;;
  esac
  echo "run.sh: using existing endpoint $EP (no server started)"
else
  BIN="${SPATE_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/spate/target}/debug/spate}"
  [ -x "$BIN" ] || die "spate binary not found at $BIN (build it with: cargo build -p spate-node, or set SPATE_BIN)"
  # A base port P with P..P+2 (API), P+10..P+12 (admin) and P+20..P+22 (peers) all free.
  PORT="$("$PY" - <<'PY'
import random, socket, sys
for _ in range(200):
    p = random.randint(20000, 50000)
    socks = []
    try:
        for q in (p, p + 1, p + 2, p + 10, p + 11, p + 12, p + 20, p + 21, p + 22, p + 30, p + 31, p + 32):
            s = socket.socket(); s.bind(("127.0.0.1", q)); socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks: s.close()
    print(p); sys.exit(0)
sys.exit("no free port range found")
PY
)"
  ADMIN=$((PORT + 10))
  mkdir -p "$WORKDIR/data"
  echo "run.sh: starting $BIN dev --port $PORT --data-dir $WORKDIR/data (log: $LOG)"
  "$BIN" dev --port "$PORT" --data-dir "$WORKDIR/data" >"$LOG" 2>&1 &
  SERVER_PID=$!
  EP="http://127.0.0.1:$PORT"
  if ! "$PY" - "$ADMIN" "$SERVER_PID" <<'PY'
import os, sys, time, urllib.request
admin, pid = int(sys.argv[1]), int(sys.argv[2])
deadline = time.time() + 60
while time.time() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("server process exited before becoming ready")
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/ready" % admin, timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.2)
sys.exit("server not ready on :%d/ready after 60s" % admin)
PY
  then
    die "spate dev did not become ready"
  fi
  echo "run.sh: server ready (pid $SERVER_PID, api $EP, admin http://127.0.0.1:$ADMIN)"
  export SPATE_TLS_ENDPOINT="https://localhost:$((PORT + 30))"
  export SPATE_DEV_CA="$WORKDIR/data/tls/ca.pem"
fi
export SPATE_CBOR="${SPATE_CBOR:-1}"

# ---------------------------------------------------------------- pytest
export PYTHONDONTWRITEBYTECODE=1
set +e
SPATE_ENDPOINT="$EP" "$VENV/bin/pytest" -p no:cacheprovider -q -rfEsxX "$HERE" "$@"
PYTEST_RC=$?
set -e
echo "run.sh: pytest exit status $PYTEST_RC"

# ---------------------------------------------------------------- enhanced fan-out (JS SDK v3, HTTP/2)
if [ "${SKIP_EFO_JS:-0}" != "1" ]; then
  bash "$HERE/run_efo_js.sh" "$EP" || { echo "run.sh: run_efo_js.sh failed"; PYTEST_RC=1; }
fi

# ---------------------------------------------------------------- KCL (kcl-rs + dynalite lease store)
if [ "${SKIP_KCL:-0}" != "1" ]; then
  bash "$REPO/tests/kcl/run.sh" "$EP" || { echo "run.sh: tests/kcl/run.sh failed"; PYTEST_RC=1; }
fi

# ---------------------------------------------------------------- JavaScript SDK v3
JS_FAIL=0
NPM_DIR="${SPATE_NPM_DIR:-$HOME/.cache/spate/npm}"
if [ "${SKIP_JS:-0}" = "1" ]; then
  echo "run.sh: SKIP_JS=1, JavaScript SDK checks skipped"
elif ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "run.sh: node/npm not found, JavaScript SDK checks skipped"
else
  mkdir -p "$NPM_DIR"
  if [ ! -d "$NPM_DIR/node_modules/@aws-sdk/client-kinesis" ]; then
    echo "run.sh: installing @aws-sdk/client-kinesis into $NPM_DIR" >&2
    [ -f "$NPM_DIR/package.json" ] || echo '{"name":"spate-js-clients","private":true}' > "$NPM_DIR/package.json"
    (cd "$NPM_DIR" && timeout 300 npm install --no-audit --no-fund --loglevel=error "@aws-sdk/client-kinesis@3") || die "npm install @aws-sdk/client-kinesis failed"
  fi
  for JS_EP in "$EP" ${SPATE_TLS_ENDPOINT:+"$SPATE_TLS_ENDPOINT"}; do
    echo "run.sh: AWS SDK for JavaScript v3 (default HTTP/2 handler) against $JS_EP"
    if ! SPATE_NPM_DIR="$NPM_DIR" NODE_EXTRA_CA_CERTS="${SPATE_DEV_CA:-}" NODE_NO_WARNINGS=1 \
        timeout 180 node "$HERE/js/kinesis_v3.mjs" "$JS_EP"; then
      JS_FAIL=1
    fi
  done
fi

# ---------------------------------------------------------------- walkthrough
WALK_FAIL=0
if [ "${SKIP_WALKTHROUGH:-0}" != "1" ]; then
  [ -f "$WALK" ] || die "walkthrough not found at $WALK (set SHARED_DIR)"
  mkdir -p "$RESULTS"
  WOUT="$RESULTS/cli_walkthrough.txt"
  echo "run.sh: running $WALK against $EP (output saved to $WOUT)"
  set +e
  AWS_CLI="$VENV/bin/aws" WAIT_SECS="${WAIT_SECS:-60}" bash "$WALK" "$EP" 2>&1 | tee "$WOUT"
  set -e
  summary="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$WOUT" | tail -n 1 || true)"
  [ -n "$summary" ] || { echo "run.sh: walkthrough printed no summary line"; WALK_FAIL=1; }

  req_total=0; req_pass=0; missing=()
  while IFS= read -r name || [ -n "$name" ]; do
    name="${name%%#*}"; name="$(echo "$name" | tr -d '[:space:]')"
    [ -n "$name" ] || continue
    req_total=$((req_total + 1))
    if grep -qxF "PASS $name" "$WOUT"; then
      req_pass=$((req_pass + 1))
    else
      missing+=("$name")
    fi
  done < "$REQUIRED"
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "run.sh: required walkthrough checks not passing: ${missing[*]}"
    WALK_FAIL=1
  fi
  if [ "${WALKTHROUGH_STRICT:-0}" = "1" ] && ! echo "$summary" | grep -qE ' 0 failed$'; then
    echo "run.sh: WALKTHROUGH_STRICT=1 and the walkthrough reported: ${summary:-no summary}"
    WALK_FAIL=1
  fi
  echo "run.sh: walkthrough full result: ${summary:-none}"
  echo "walkthrough-required: $req_pass passed, $((req_total - req_pass)) failed"
fi

if [ "$PYTEST_RC" -eq 0 ] && [ "$WALK_FAIL" -eq 0 ] && [ "$JS_FAIL" -eq 0 ]; then
  STATUS=0
  echo "run.sh: OK"
else
  echo "run.sh: FAILED (pytest rc=$PYTEST_RC, walkthrough failure=$WALK_FAIL, js failure=$JS_FAIL)"
fi
exit "$STATUS"
