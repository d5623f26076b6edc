#!/usr/bin/env bash
# The test command: set up (scripts/bootstrap.sh), lint, type-check, run every test group.
# The integration tests start their own redis-server processes on free loopback ports.
# The envtest tier starts a real etcd + kube-apiserver from $KUBEBUILDER_ASSETS (skipped
# with one line when unset; .ci/run sets it and never skips). The compose tier brings the
# project's docker-compose.yml up on podman (skipped with one line without podman and
# docker-compose; .ci/run installs them).
set -euo pipefail
# (one command per line: under set -e, a failure inside an && chain would not stop the run)
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export CI=${CI:-}
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== import contracts"
.venv/bin/lint-imports
echo "== unit tests (coverage gate on the pure core)"
.venv/bin/pytest -m unit -q -p no:cacheprovider --cov --cov-report=term "$@"
echo "== integration tests"
.venv/bin/pytest -m "integration and not envtest" -q -p no:cacheprovider "$@"
echo "== real kube-apiserver tests (KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS:-unset: skipped})"
.venv/bin/pytest -m envtest -q -p no:cacheprovider "$@"
echo "== chaos tests"
.venv/bin/pytest -m chaos -q -p no:cacheprovider "$@"
echo "== compose tests (the docker-compose stack on podman)"
.venv/bin/pytest -m compose -q -p no:cacheprovider "$@"
