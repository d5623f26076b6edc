#!/usr/bin/env bash
# The one-command demo for a fresh machine: set up (scripts/bootstrap.sh: .venv, the
# package, redis-server), then watch the real operator (worker + beat on a private
# Redis) run a few ticks on an emulated cluster. Options go to `joulie-tasks demo`
# (e.g. --ticks 4, --nodes 20, --policy static_partition; see --help). The chart is
# written to the directory you run this from (--png to choose).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bash "$repo/scripts/bootstrap.sh"
exec "$repo/.venv/bin/joulie-tasks" demo "$@"
