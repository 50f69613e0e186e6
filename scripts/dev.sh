#!/usr/bin/env bash
# One entry point for a fresh clone: sets up .venv from the exact pins, then runs a job.
#   bash scripts/dev.sh demo [--quick] [...]   -> seit demo (the whole method end to end)
#   bash scripts/dev.sh test [pytest args]     -> ruff check + format check + pytest -q
#   bash scripts/dev.sh seit ARGS...           -> any seit command inside the venv
#   bash scripts/dev.sh setup                  -> only (re)create the environment
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${SEIT_VENV:-.venv}"
PY="${SEIT_PYTHON:-python3}"
STAMP="$VENV/.seit-setup"
want="$(cat requirements/ci.txt pyproject.toml | sha256sum | cut -d' ' -f1)"

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[seit] creating $VENV with $($PY --version 2>&1)"
    "$PY" -m venv "$VENV"
  fi
  if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    echo "[seit] installing pinned requirements (first run: a few minutes)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements/ci.txt
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
    echo "$want" > "$STAMP"
  fi
}

cmd="${1:-help}"
[ $# -gt 0 ] && shift
case "$cmd" in
  setup) setup ;;
  demo) setup; exec "$VENV/bin/seit" demo "$@" ;;
  seit) setup; exec "$VENV/bin/seit" "$@" ;;
  test)
    setup
    echo "[seit] ruff check"
    "$VENV/bin/ruff" check src tests benchmarks
    "$VENV/bin/ruff" format --check src tests benchmarks
    echo "[seit] pytest"
    exec "$VENV/bin/python" -m pytest -q "$@"
    ;;
  *) sed -n '2,7p' "$0"; exit 2 ;;
esac
