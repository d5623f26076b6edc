"""Beat deployable: validate the settings (fail fast, exit 2), then run Celery beat.

Running two beats is safe: each tick is deduplicated per interval in Redis and
takes the leader lock, so two beats still give one reconcile per interval.
"""

from __future__ import annotations

import sys

from joulie_tasks.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main(["beat", *sys.argv[1:]]))
