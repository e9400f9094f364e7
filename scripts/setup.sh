#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test Spate. Idempotent.
#   - clang + libclang-dev: rocksdb's bindgen (the protobuf compiler is vendored by a crate)
#   - python3-venv: the real-client tests (AWS CLI, boto3) run in a venv
#   - nftables: partitions in the chaos tests (cluster-tests/tests/chaos.rs)
#   - nodejs, npm: JavaScript SDK tests and dynalite (tests/kcl)
#   - faketime: wall-clock jumps in the chaos and clock_jump tests
#   - a Rust toolchain must already be installed (rustup); we check and fail loudly.
set -euo pipefail

need_apt=()
command -v clang >/dev/null 2>&1 || need_apt+=(clang)
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
  need_apt+=(libclang-dev)
fi
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# nftables: the chaos tests cut links between per-node network namespaces (as root)
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
# nodejs + npm: the JavaScript SDK checks and dynalite, the KCL test's lease store (tests/kcl,
# which needs Node.js >= 20 and says so if the machine's is older)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# faketime: libfaketime steps one node's wall clock in the clock-jump tests (chaos, clock_jump)
LIBFAKETIME=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
[ -f "$LIBFAKETIME" ] || need_apt+=(faketime)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[setup] installing: ${need_apt[*]}" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if [ ! -f "$LIBFAKETIME" ]; then
  echo "[setup] $LIBFAKETIME missing after installing faketime: the clock-jump tests need it" >&2
  exit 1
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "[setup] cargo not found: install Rust with rustup first (https://rustup.rs)" >&2
  exit 1
fi
