#!/usr/bin/env bash
# Regenerate docs/RELIABILITY.md: set up (scripts/bootstrap.sh), run the chaos group
# (tests/chaos: real redis-server, worker and beat processes, the HTTP API emulator)
# and, when every case passes, write the table from the run's own measurements.
# Extra arguments go to pytest. A partial or failing run leaves the table as it was.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export CI=${CI:-}
JOULIE_WRITE_RELIABILITY=1 exec .venv/bin/pytest -m chaos -q -p no:cacheprovider "$@"
