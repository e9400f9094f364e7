#!/usr/bin/env bash
# Helm chart tests: render (Helm's own engine, PyPI helm-python-sdk), lint, strict Kubernetes
# schema validation (PyPI kubernetes-validate) and a local 3-process cluster started from the
# rendered StatefulSet. Uses a venv at $HOME/.cache/spate/venv-helm.
#   SPATE_BIN=/path/to/spate  (default $HOME/.cache/spate/target/debug/spate; the local-cluster
#                              test is skipped when it is missing)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${SPATE_HELM_VENV:-$HOME/.cache/spate/venv-helm}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import helm_python, kubernetes_validate, pytest, yaml' >/dev/null 2>&1; then
  "$venv/bin/pip" install -q --disable-pip-version-check helm-python-sdk kubernetes-validate pytest pyyaml
fi
export SPATE_BIN="${SPATE_BIN:-$HOME/.cache/spate/target/debug/spate}"
cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider -rs "$@" .
