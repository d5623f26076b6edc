"""The demo's options: the command line, the settings the operator runs with, one summary line.

Pure: no processes, no I/O (``main.py`` runs the demo).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from joulie_tasks.core import durations, models

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
READY_TIMEOUT_S = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options (cli.py registers the subcommand and calls :func:`run`)."""
    parser.add_argument("--ticks", type=_positive, default=8, help="ticks to watch (default 8)")
    parser.add_argument(
        "--interval", type=_duration, default="2s", help="tick period, Go duration (default 2s)"
    )
    parser.add_argument("--nodes", type=_positive, default=12, help="managed nodes (default 12)")
    parser.add_argument(
        "--policy",
        choices=[p.value for p in models.PolicyName],
        default=models.PolicyName.QUEUE_AWARE_V1.value,
        help="policy (default queue_aware_v1, which shows the most behaviour)",
    )
    parser.add_argument("--static-hp-frac", type=float, default=0.5, metavar="FRAC")
    parser.add_argument(
        "--queue-hp-base-frac",
        type=float,
        default=0.25,
        metavar="FRAC",
        help="demo default 0.25 (the operator's is 0.60) so that demand shows",
    )
    parser.add_argument("--queue-hp-min", type=int, default=1, metavar="N")
    parser.add_argument("--queue-hp-max", type=int, default=0, metavar="N", help="≤ 0: all nodes")
    parser.add_argument(
        "--queue-perf-per-hp-node",
        type=int,
        default=5,
        metavar="N",
        help="demo default 5 (the operator's is 10); also each node's room for such pods",
    )
    parser.add_argument(
        "--output-api",
        choices=[o.value for o in models.OutputApi],
        default=models.OutputApi.NODEPOWERPROFILE.value,
        help="objects the decision is written as (OUTPUT_API; default nodepowerprofile)",
    )
    parser.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    parser.add_argument(
        "--png", type=Path, default=Path("joulie-demo.png"), help="chart path (./joulie-demo.png)"
    )
    parser.add_argument("--no-color", action="store_true", help="no ANSI colours")
    parser.add_argument(
        "--no-watch",
        action="store_true",
        help="no watcher: every tick lists the cluster, no event-driven ticks",
    )
    parser.add_argument("--redis-url", help="use this (empty) Redis instead of a private one")
    parser.add_argument("--workdir", type=Path, help="logs and kubeconfig (default: a temp dir)")


@dataclass(frozen=True)
class Options:
    ticks: int
    interval: str
    nodes: int
    policy: str
    static_hp_frac: float
    queue_hp_base_frac: float
    queue_hp_min: int
    queue_hp_max: int
    queue_perf_per_hp_node: int
    seed: int
    png: Path
    colour: bool
    redis_url: str | None
    workdir: Path | None
    log_level: str
    watch: bool = True
    output_api: str = models.OutputApi.NODEPOWERPROFILE.value

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, tty: bool) -> Options:
        return cls(
            ticks=args.ticks,
            interval=args.interval,
            nodes=args.nodes,
            policy=args.policy,
            static_hp_frac=args.static_hp_frac,
            queue_hp_base_frac=args.queue_hp_base_frac,
            queue_hp_min=args.queue_hp_min,
            queue_hp_max=args.queue_hp_max,
            queue_perf_per_hp_node=args.queue_perf_per_hp_node,
            seed=args.seed,
            png=args.png,
            colour=tty and not args.no_color,
            watch=not getattr(args, "no_watch", False),
            output_api=getattr(args, "output_api", models.OutputApi.NODEPOWERPROFILE.value),
            redis_url=args.redis_url,
            workdir=args.workdir,
            log_level=args.log_level,
        )

    def operator_env(self) -> dict[str, str]:
        """The settings the demo's worker and beat run with (docs/SPEC.md §3 names)."""
        return {
            "RECONCILE_INTERVAL": self.interval,
            "POLICY_TYPE": self.policy,
            "STATIC_HP_FRAC": str(self.static_hp_frac),
            "QUEUE_HP_BASE_FRAC": str(self.queue_hp_base_frac),
            "QUEUE_HP_MIN": str(self.queue_hp_min),
            "QUEUE_HP_MAX": str(self.queue_hp_max),
            "QUEUE_PERF_PER_HP_NODE": str(self.queue_perf_per_hp_node),
            "KUBE_REQUEST_TIMEOUT": "5s",
            "OUTPUT_API": self.output_api,
        }


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number ≥ 1")
    return value


def _duration(text: str) -> str:
    try:
        seconds = durations.parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive duration")
    return text


_OPTION_OF = {"RECONCILE_INTERVAL": "--interval", "POLICY_TYPE": "--policy"}


def option_names(line: str) -> str:
    """``QUEUE_HP_MIN='x': …`` → ``--queue-hp-min='x': …`` (the demo's own option names)."""
    name, sep, rest = line.partition("=")
    option = _OPTION_OF.get(name, "--" + name.lower().replace("_", "-"))
    return option + sep + rest


def arrow() -> str:
    try:
        "→".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "->"
    return "→"


def describe(opts: Options, env: Mapping[str, str]) -> str:
    """One line saying what runs, for the top of the output."""
    if opts.policy == models.PolicyName.QUEUE_AWARE_V1:
        params = (
            f"base {opts.queue_hp_base_frac:g}, min {opts.queue_hp_min}, "
            f"max {opts.queue_hp_max if opts.queue_hp_max > 0 else 'all'}, "
            f"{opts.queue_perf_per_hp_node} perf pods per node"
        )
    elif opts.policy == models.PolicyName.STATIC_PARTITION:
        params = f"fraction {opts.static_hp_frac:g}"
    else:
        params = "swaps nodes 0 and 1 every interval"
    return (
        f"demo: {opts.nodes} managed nodes (+1 reserved, +1 unschedulable), "
        f"policy {opts.policy} ({params}), interval {env['RECONCILE_INTERVAL']}, "
        f"{opts.ticks} ticks, seed {opts.seed}, output {opts.output_api}"
    )
