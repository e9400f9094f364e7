#!/usr/bin/env bash
# Runs the whole test suite: formatting, clippy, unit and property tests, real-process
# cluster tests, the real-client API tests (AWS CLI walkthrough, boto3) and the Helm chart tests.
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
cargo test --workspace --no-fail-fast -- --test-threads=2

step "real AWS clients against spate dev"
bash tests/clients/run.sh

step "Helm chart: render, lint, strict schemas, local 3-node cluster from the StatefulSet"
bash tests/helm/run.sh -q

echo
echo "all test stages passed in $(( $(date +%s) - t0 ))s"
