#!/usr/bin/env bash
# The test command: set up (scripts/bootstrap.sh), lint, type-check, run every test group.
# The integration tests start their own redis-server processes on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export CI=${CI:-}
echo "== ruff" && .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy" && .venv/bin/mypy
echo "== import contracts" && .venv/bin/lint-imports
echo "== unit tests (coverage gate on the pure core)"
.venv/bin/pytest -m unit -q -p no:cacheprovider --cov --cov-report=term "$@"
echo "== integration tests" && .venv/bin/pytest -m integration -q -p no:cacheprovider "$@"
echo "== chaos tests" && .venv/bin/pytest -m chaos -q -p no:cacheprovider "$@"
