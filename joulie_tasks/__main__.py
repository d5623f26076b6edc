"""``python -m joulie_tasks`` is the ``joulie-tasks`` command."""

from joulie_tasks.cli.main import main

raise SystemExit(main())
