"""The ``joulie-tasks`` command: worker, beat, metrics, reconcile (and more subcommands).

Every subcommand loads the settings first (invalid configuration → one line per
variable, exit 2), builds its clients with the wiring root (adapters/clients.py)
and turns an unreachable Redis or API server into one line naming the URL and
exit 1: no traceback, no crash loop.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from joulie_tasks import __version__, config, errors
from joulie_tasks.adapters import clients, exporter, retrying, store
from joulie_tasks.cli import ops
from joulie_tasks.core import durations, models
from joulie_tasks.ports import metrics
from joulie_tasks.queue import celery_app
from joulie_tasks.workflow import known_series, lifecycle, runner, watcher

logger = logging.getLogger(__name__)

EXIT_FAILURE = 1
EXIT_SKIPPED = 3


def parse_time(text: str) -> float:
    """``--at``: Unix seconds or ISO 8601 with a zone (see durations.parse_time_point)."""
    try:
        return durations.parse_time_point(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _fail(message: str, code: int = EXIT_FAILURE) -> int:
    print(f"joulie-tasks: {message}", file=sys.stderr)
    return code


def _connect_redis(settings: config.Settings) -> store.RedisStore:
    state = clients.redis_store(settings)
    state.ping()
    return state


def _wait_for_redis(
    settings: config.Settings, *, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Block until Redis answers, backing off (retrying.until_reachable)."""
    state = clients.redis_store(settings)
    try:
        retrying.until_reachable("Redis", sleep=sleep)(state.ping)
    finally:
        state.close()


# --- subcommands --------------------------------------------------------------------------


def cmd_worker(settings: config.Settings, args: argparse.Namespace) -> int:
    _wait_for_redis(settings)
    app = celery_app.configure(settings)
    argv = ["worker", f"--loglevel={args.log_level}", *args.celery_args]
    app.worker_main(argv=argv)
    return 0


def cmd_beat(settings: config.Settings, args: argparse.Namespace) -> int:
    _wait_for_redis(settings)
    app = celery_app.configure(settings)
    app.start(argv=["beat", f"--loglevel={args.log_level}", *args.celery_args])
    return 0


def _cache_gauges(state: store.RedisStore) -> dict[str, float]:
    """Cache age (seconds since the watcher's last heartbeat) and sync state, at scrape time."""
    status = clients.cache(state).status()
    gauges = metrics.Values()
    gauges.set(metrics.CACHE_SYNCED, float(all(status.synced.values())))
    gauges.set(metrics.WATCH_ACTIVE, float(status.lease is not None))
    age = status.age(time.time())
    if age is not None:
        gauges.set(metrics.CACHE_AGE, age)
    if status.last_relist is not None:
        gauges.set(metrics.WATCH_LAST_RELIST, status.last_relist)
    return gauges.as_dict()


def cmd_metrics(settings: config.Settings, args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    state = clients.redis_store(settings)
    host, port = config.host_port(settings.metrics_addr)
    registry = CollectorRegistry()

    def read() -> tuple[dict[str, float], dict[str, float], dict[str, models.FsmRecord], bool]:
        counters, gauges = state.read_metric_values()
        gauges.update(_cache_gauges(state))
        return counters, gauges, state.fsm(), state.is_paused()

    # Counters and histograms start at 0, so their first event moves increase().
    registry.register(exporter.RedisCollector(read, known=known_series.known_series()))
    # The interval is configuration, not Redis state: alert rules compare tick age to it.
    interval = Gauge(metrics.RECONCILE_INTERVAL, "RECONCILE_INTERVAL in seconds", registry=registry)
    interval.set(settings.reconcile_interval)
    start_http_server(port, addr=host, registry=registry)
    print(f"metrics served at http://{host}:{port}/metrics", flush=True)
    while True:
        time.sleep(3600)


def cmd_watch(settings: config.Settings, args: argparse.Namespace) -> int:
    """The watcher: active while it holds the lease, hot standby otherwise."""
    import signal
    import threading

    _wait_for_redis(settings)
    app = celery_app.configure(settings)
    state = clients.redis_store(settings)
    gateway = clients.gateway(settings, pool_size=max(settings.kube_pool_size, 4))

    def kick() -> None:
        now = time.time()
        app.send_task(
            celery_app.TICK_TASK,
            kwargs={"scheduled_at": now, "dedup": False},
            expires=settings.reconcile_interval,
        )

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"watcher {watcher.holder_identity()} started", flush=True)
    watcher.Watcher(
        settings, state=state, cache=clients.cache(state), gateway=gateway, kick=kick
    ).run(stop)
    return 0


def cmd_reconcile(settings: config.Settings, args: argparse.Namespace) -> int:
    if not args.once:
        return _fail("reconcile runs one tick: pass --once (beat runs the periodic ticks)")
    state = _connect_redis(settings)
    gateway = clients.gateway(settings)
    tick_time = args.at if args.at is not None else time.time()
    try:
        report = runner.run_inline(
            gateway=gateway,
            state=state,
            cache=clients.cache(state),
            settings=settings,
            tick_time=tick_time,
            dry_run=args.dry_run,
        )
    except errors.TickSkipped as e:
        return _fail(f"tick not run: {e}", EXIT_SKIPPED)
    writes = state.load_writes(report.tick_id)
    needs = writes.nodes()
    if args.output == "json":
        print(json.dumps(_report_json(report, needs), indent=2))
    else:
        _print_report(report, needs)
    return EXIT_FAILURE if report.failures else 0


def _report_json(report: lifecycle.TickReport, needs: set[models.NodeName]) -> dict[str, object]:
    return {
        "tick_id": report.tick_id,
        "tick_time": report.tick_time,
        "policy": report.policy,
        "dry_run": report.dry_run,
        "paused": report.paused,
        "writes_planned": report.writes_planned,
        "written": report.written,
        "retries": report.retries,
        "failures": report.failures,
        "transitions": {"applied": report.applied, "deferred": report.deferred},
        "duration_s": round(report.duration_s, 4),
        "nodes": [
            {
                "node": d.node,
                "profile": d.profile.value,
                "draining": d.draining,
                "cap_watts": d.cap_watts,
                "state": d.to_state.value,
                "from_state": d.from_state.value,
                "performance_pods": d.performance_pods,
                "held": d.held,
                "held_by": None if d.hold is None else d.hold.value,
                "write_needed": d.node in needs,
            }
            for d in report.decisions
        ],
    }


def _print_report(report: lifecycle.TickReport, needs: set[models.NodeName]) -> None:
    mode = " (dry run: nothing written)" if report.dry_run else ""
    print(f"tick {report.tick_id} policy {report.policy}{mode}")
    print(f"{'NODE':<28} {'FROM':<20} {'TO':<20} {'PROFILE':<12} {'DRAINING':<9} WRITE")
    for d in report.decisions:
        print(
            f"{d.node:<28} {d.from_state.value:<20} {d.to_state.value:<20} "
            f"{d.profile.value:<12} {str(d.draining).lower():<9} "
            f"{'yes' if d.node in needs else '-'}"
        )
    print(
        f"{report.nodes} nodes, {report.writes_planned} writes planned, {report.written} written, "
        f"{len(report.failures)} failed, {report.applied} applied, {report.deferred} deferred "
        f"in {report.duration_s:.3f}s"
    )


#: Where subcommands from other distributions register (the test bed's ``demo``).
COMMANDS_GROUP = "joulie_tasks.commands"
DEMO_MISSING = (
    "the demo is part of the test bed: install it with "
    "`pip install -e ./testbed` in a checkout (or run scripts/demo.sh)"
)


def cmd_demo_missing(settings: config.Settings, args: argparse.Namespace) -> int:
    return _fail(DEMO_MISSING)


def _plugin_commands(sub: Any) -> set[str]:
    """Let installed distributions add subcommands (entry points); returns their names."""
    found = set()
    for entry in importlib.metadata.entry_points(group=COMMANDS_GROUP):
        entry.load()(sub)
        found.add(entry.name)
    return found


# --- parser -------------------------------------------------------------------------------

Handler = Callable[[config.Settings, argparse.Namespace], int]


def _asks_for_a_plugin(argv: Sequence[str]) -> bool:
    """True when the subcommand named in ``argv`` is not one of ours (so installed
    plugins are loaded only then: a worker never imports the test bed and its libraries)."""
    words = iter(argv)
    for word in words:
        if word == "--log-level":
            next(words, None)
        elif not word.startswith("-"):
            return word not in _builtin_commands()
    return False


def _builtin_commands() -> set[str]:
    parser = build_parser(plugins=False)
    choices: set[str] = set()
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        choices |= set(getattr(action, "choices", None) or ())
    return choices - {"demo"}


def build_parser(*, plugins: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="joulie-tasks",
        description="Energy-aware node-profile operator for Kubernetes, on Celery.",
    )
    parser.add_argument("--version", action="version", version=f"joulie-tasks {__version__}")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = sub.add_parser(
        "worker", help="run a Celery worker (other options, e.g. --concurrency, go to Celery)"
    )
    worker.set_defaults(handler=cmd_worker, passthrough=True)

    beat = sub.add_parser("beat", help="run Celery beat, one tick per RECONCILE_INTERVAL")
    beat.set_defaults(handler=cmd_beat, passthrough=True)

    mets = sub.add_parser("metrics", help="serve Prometheus metrics at METRICS_ADDR")
    mets.set_defaults(handler=cmd_metrics)

    wat = sub.add_parser(
        "watch", help="watch the cluster into the Redis cache and kick ticks on changes"
    )
    wat.set_defaults(handler=cmd_watch)

    rec = sub.add_parser("reconcile", help="run one tick in this process")
    rec.add_argument("--once", action="store_true", help="run exactly one tick (required)")
    rec.add_argument("--dry-run", action="store_true", help="plan and print; write nothing")
    rec.add_argument("--output", choices=("table", "json"), default="table")
    rec.add_argument("--at", type=parse_time, help="tick time: Unix seconds or ISO 8601")
    rec.set_defaults(handler=cmd_reconcile)

    if "demo" not in (_plugin_commands(sub) if plugins else set()):
        dem = sub.add_parser(
            "demo", help="watch the real operator run on an emulated cluster (the test bed)"
        )
        dem.set_defaults(handler=cmd_demo_missing, passthrough=True)

    ops.register(sub, output={"choices": ("table", "json"), "default": "table"})
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(plugins=_asks_for_a_plugin(words))
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.celery_args = extra
    _setup_logging(args.log_level)
    settings = config.load_settings()
    handler: Handler = args.handler
    try:
        return handler(settings, args)
    except errors.StateStoreError as e:
        return _fail(f"cannot reach Redis: {e}")
    except errors.KubeError as e:
        return _fail(f"cannot reach the Kubernetes API: {e}")
    except KeyboardInterrupt:
        return 130
