"""Run ``joulie-tasks demo``: the signals, the session, the exit code.

The operator's command line finds this through the ``joulie_tasks.commands`` entry point
(``register``); the operator itself never imports the test bed.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

from joulie_tasks import config, errors
from joulie_testbed import procs
from joulie_testbed.demo import children, options, session, view

logger = logging.getLogger(__name__)


def register(sub: Any) -> None:
    """Add the ``demo`` subcommand to the operator's command line (entry point)."""
    dem = sub.add_parser("demo", help="watch the real operator run on an emulated cluster")
    options.add_arguments(dem)
    dem.set_defaults(handler=run)


def _inherited_environment() -> dict[str, str]:
    # The one environment read outside config.py: the children need PATH, HOME, the
    # locale and the virtualenv. children.child_environment strips every operator
    # setting from it, and the demo sets those explicitly.
    return dict(os.environ)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise children.Terminated()


def run(settings: config.Settings, args: argparse.Namespace) -> int:
    """Run the demo; the exit code is 0, 1 (error, one line), 2 (bad option), 130 or 143."""
    environ = _inherited_environment()
    tty = sys.stdout.isatty() and "NO_COLOR" not in environ
    opts = options.Options.from_args(args, tty=tty)
    drop = {name.upper() for name in config.Settings.model_fields} | {"KUBECONFIG"}
    base_env = {**children.child_environment(environ, drop), **opts.operator_env()}
    try:
        # Validates the options as the worker will (the Redis URL is chosen later).
        operator = config.read_settings({**base_env, "REDIS_URL": settings.redis_url})
    except errors.ConfigError as e:
        for line in e.lines:
            print(
                f"joulie-tasks demo: invalid option: {options.option_names(line)}", file=sys.stderr
            )
        return config.EXIT_CONFIG
    style = view.Style(colour=opts.colour, arrow=options.arrow())
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="joulie-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    _quiet_logging()
    run_session = session.Session(
        opts=opts,
        operator=operator,
        fallback_redis_url=settings.redis_url,
        env=base_env,
        workdir=workdir.resolve(),
        style=style,
    )
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    code = 0
    failure: str | None = None
    try:
        run_session.start()
        run_session.watch()
    except KeyboardInterrupt:
        code = options.EXIT_INTERRUPTED
    except children.Terminated:
        code = options.EXIT_TERMINATED
    except (children.DemoError, procs.HarnessError, errors.JoulieError) as e:
        code, failure = options.EXIT_ERROR, str(e)
    finally:
        # A second Ctrl-C must not cut the clean-up short (it is bounded by timeouts).
        held: dict[int, Any] = {
            s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            run_session.stop()
            run_session.report(
                interrupted=code in (options.EXIT_INTERRUPTED, options.EXIT_TERMINATED)
            )
        finally:
            signal.signal(signal.SIGINT, held[signal.SIGINT])
            signal.signal(signal.SIGTERM, previous)
    if failure is not None:  # last, so it is the line the reader sees
        print(f"joulie-tasks demo: {failure}", file=sys.stderr, flush=True)
    return code


def _quiet_logging() -> None:
    """The demo's own output is the table: library INFO lines would break it up."""
    root = logging.getLogger()
    root.setLevel(max(root.level, logging.WARNING))
