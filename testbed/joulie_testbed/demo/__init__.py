"""``joulie-tasks demo``: the real operator on an emulated cluster, watched tick by tick.

Why: a newcomer should see the operator decide in one command, without a cluster.
The demo runs the same processes as production — a Celery worker and beat
(``python -m joulie_tasks worker|beat``) on a Redis — against test bed's API
emulator (a thread of this process, reached through a written kubeconfig). It
seeds a small cluster, changes the workload between ticks (workload.py),
prints each finished tick as a table with its transitions highlighted
(view.py), and ends with a summary and a PNG chart (chart.py, drawn with matplotlib).

Redis: a private ``redis-server`` on a free loopback port (no persistence) is
started whenever the binary exists, because the operator's keys and Celery's
queue have fixed names that would mix with any other user of a shared Redis.
``--redis-url`` (or, without the binary, ``REDIS_URL``) is used only when that
database is empty.

Every exit path — success, error, Ctrl-C (exit 130), SIGTERM (143) — stops beat,
the worker (whole process groups), redis-server and the emulator, in that order,
and still prints the summary of the ticks seen so far. Logs of the children and
the kubeconfig stay in the work directory, printed at the end.

Not used by the operator at runtime; it is the only non-test user of the emulator.
"""
