"""``python -m joulie_tasks`` is the ``joulie-tasks`` command."""

from joulie_tasks.cli import main

raise SystemExit(main())
