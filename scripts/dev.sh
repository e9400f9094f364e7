#!/usr/bin/env bash
# Starts a local 3-node, 3-zone Spate cluster in one process, Kinesis API on
# http://127.0.0.1:4567 (override with --port). Data is kept in ~/.local/share/spate/dev
# (override with --data-dir; --fresh wipes it). Ctrl-C stops it gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
cargo build -p spate-node --bin spate
exec "$SPATE_BIN" dev "$@"
