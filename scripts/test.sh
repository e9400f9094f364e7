#!/usr/bin/env bash
# Runs the whole test suite: formatting, clippy, unit and property tests, real-process
# cluster tests, and the real-client API tests (AWS CLI walkthrough, boto3).
# Long chaos schedules are opt-in: SPATE_CHAOS_LONG=1.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh

step() { echo; echo "=== $* ==="; }
t0=$(date +%s)

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (-D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

step "build the spate binary"
cargo build -p spate-node --bin spate

step "cargo test (unit, property, cluster tests)"
cargo test --workspace -- --test-threads=2

step "real AWS clients against spate dev"
bash tests/clients/run.sh

echo
echo "all test stages passed in $(( $(date +%s) - t0 ))s"
