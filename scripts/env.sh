# Sourced by the other scripts: one persistent cargo target dir outside the clone, so
# RocksDB's C++ is built once per machine, not once per clone or CI run.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spate/target}"
export SPATE_BIN="${SPATE_BIN:-$CARGO_TARGET_DIR/debug/spate}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
mkdir -p "$CARGO_TARGET_DIR"
