#!/usr/bin/env bash
# Make this checkout runnable on a fresh machine: a virtualenv (.venv) with the operator,
# its test bed (testbed/: emulator, process harness, demo) and the dev tools, a
# redis-server binary (installed with the system package manager when missing) and, where apt-get exists, Debian's prometheus package (prometheus and
# promtool for the monitoring tests). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "joulie-tasks needs Python >= 3.11 (found: $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml testbed/pyproject.toml | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # The operator and its test bed (emulator, process harness, demo): two distributions.
  .venv/bin/python -m pip install --quiet -e '.[dev]' -e ./testbed
  rm -f .venv/.installed-* && touch "$stamp"
fi

if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server not found; installing it with the system package manager" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server >/dev/null
  elif command -v dnf >/dev/null 2>&1; then
    $SUDO dnf install -y -q redis
  elif command -v brew >/dev/null 2>&1; then
    brew install redis
  else
    echo "cannot install redis-server: no apt-get, dnf or brew; install it by hand" >&2
    exit 1
  fi
fi

# promtool and the Prometheus server: the alert-rule and dashboard tests use the real ones.
if ! command -v promtool >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "promtool not found; installing Debian's prometheus package" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # Tests start their own servers on free ports; the package's own service is not used.
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
