#!/usr/bin/env bash
# Enhanced fan-out acceptance with the AWS SDK for JavaScript v3 (default HTTP/2 handler over
# http://, i.e. h2c): tests/clients/efo_js/efo_test.cjs against ENDPOINT (records in order during a
# subscription, then ChildShards in the parent's last event after SplitShard).
#
#   tests/clients/run_efo_js.sh http://127.0.0.1:PORT
#
# Installs @aws-sdk/client-kinesis (pinned below) into $SPATE_NPM_EFO
# (default $HOME/.cache/spate/npm-efo) on first use.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
EP="${1:-${SPATE_ENDPOINT:-}}"
case "$EP" in
  http://127.0.0.1:*|http://localhost:*) ;;
  *) echo "run_efo_js.sh: endpoint must be http://127.0.0.1:PORT, got '$EP'" >&2; exit 2 ;;
esac
SDK_VERSION="3.1143.0"
NPM_DIR="${SPATE_NPM_EFO:-$HOME/.cache/spate/npm-efo}"
command -v node >/dev/null || { echo "run_efo_js.sh: node not found" >&2; exit 1; }
if [ "$(cat "$NPM_DIR/.spate-sdk-version" 2>/dev/null || true)" != "$SDK_VERSION" ]; then
  echo "run_efo_js.sh: installing @aws-sdk/client-kinesis@$SDK_VERSION into $NPM_DIR" >&2
  mkdir -p "$NPM_DIR"
  [ -f "$NPM_DIR/package.json" ] || echo '{"name":"spate-efo-tests","private":true}' > "$NPM_DIR/package.json"
  (cd "$NPM_DIR" && npm install --no-audit --no-fund --silent "@aws-sdk/client-kinesis@$SDK_VERSION")
  echo "$SDK_VERSION" > "$NPM_DIR/.spate-sdk-version"
fi
SPATE_ENDPOINT="$EP" NODE_PATH="$NPM_DIR/node_modules" NODE_NO_WARNINGS=1 \
  timeout 180 node "$HERE/efo_js/efo_test.cjs"
