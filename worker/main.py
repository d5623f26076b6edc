"""Worker deployable: validate the settings (fail fast, exit 2), then run a Celery worker.

Extra arguments go to Celery (``--concurrency``, ``--pool``, ``-n``). The container
image runs ``joulie-tasks worker``; ``python worker/main.py`` is the same thing.
"""

from __future__ import annotations

import sys

from joulie_tasks.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main(["worker", *sys.argv[1:]]))
