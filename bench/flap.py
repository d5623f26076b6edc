"""``python -m bench.flap``: profile flapping in watch mode, without and with damping
(docs/SPEC.md §12, issue 19).

    .venv/bin/python -m bench.flap                          # 1,000 nodes, 8 min per setting
    .venv/bin/python -m bench.flap --nodes 300 --minutes 2  # a short run
    .venv/bin/python -m bench.flap --out docs/BENCHMARKS.md # replace the flap section

Processes as in bench/watch.py: redis-server, the API emulator (its own process), one
Celery worker, the watcher (``joulie-tasks watch``, kicking a tick within a second of a
change) and this client. Policy queue_aware_v1 (base 0, min 0, 4 performance pods per
performance node), so demand decides the plan. Per setting, on a freshly seeded cluster
(one unconstrained pod per node):

- performance pods (pending, ``nodeSelector`` performance) arrive as a Poisson process
  and each lives an exponential time; the same pseudo-random workload (same seed) for
  every setting; a thread creates and deletes unconstrained pods meanwhile (churn);
- profile changes are read from the transition stream (applied transitions whose
  profile label changes); eco node-hours integrate the profiles from the converged
  start; a *flap* is a change back to the profile a node had before its previous
  change, less than 5 minutes after it;
- reaction: for every arrival that needs one more performance node than the state
  record shows at that moment, the time until the record shows enough performance
  nodes (sampled every 0.25 s; the record is written when the tick's writes landed).

Settings: no damping; ``MIN_PROFILE_DWELL``; ``DOWNGRADE_BUDGET`` per window.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import write_marked
from bench.scenarios import Bench
from bench.watch import Churn, Watcher, _pod
from joulie_tasks.adapters import store
from joulie_tasks.core import guard, models
from joulie_tasks.ports import metrics
from joulie_testbed.ticks import wait_idle

BEGIN = "<!-- flap-bench:begin -->"
END = "<!-- flap-bench:end -->"
PER_NODE = 4
POLICY = {
    "policy_type": "queue_aware_v1",
    "queue_hp_base_frac": "0",
    "queue_hp_min": "0",
    "queue_perf_per_hp_node": str(PER_NODE),
    "transition_stream_maxlen": "1000000",
}
FLAP_WINDOW_S = 300.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- pure analysis (tests/unit/test_bench_flap.py) ------------------------------------------


@dataclass(frozen=True)
class Change:
    node: str
    time: float
    profile: str  # the profile label after the change


def profile_changes(entries: Iterable[Mapping[str, str]]) -> list[Change]:
    """Applied transitions of the stream whose profile label changes, in time order."""
    out = []
    for e in entries:
        if e.get("result") != models.TransitionResult.APPLIED.value:
            continue
        before = guard.profile_of(models.NodeState(e["from"]))[0]
        after = guard.profile_of(models.NodeState(e["to"]))[0]
        if before is None or after is None or before is after:
            continue
        out.append(Change(node=e["node"], time=float(e["time"]), profile=after.value))
    return sorted(out, key=lambda c: c.time)


@dataclass
class Figures:
    changes: int = 0
    per_node_hour: float = 0.0
    flaps: int = 0
    max_changes_one_node: int = 0
    eco_node_hours: float = 0.0
    reaction_s: list[float] = field(default_factory=list)


def analyse(
    changes: Sequence[Change],
    *,
    initial: Mapping[str, str],
    start: float,
    end: float,
    flap_window_s: float = FLAP_WINDOW_S,
) -> Figures:
    """Counts and eco node-hours over [start, end] from ``initial`` profiles and the
    ``changes`` (each node's first change leaves its initial profile)."""
    by_node: dict[str, list[Change]] = {}
    for c in changes:
        if start <= c.time <= end:
            by_node.setdefault(c.node, []).append(c)
    figures = Figures(changes=sum(len(v) for v in by_node.values()))
    hours = max(end - start, 1e-9) / 3600
    figures.per_node_hour = figures.changes / max(len(initial), 1) / hours
    figures.max_changes_one_node = max((len(v) for v in by_node.values()), default=0)
    eco_s = 0.0
    for node, first in initial.items():
        profile, since = first, start
        previous: Change | None = None
        before_previous = first
        for c in by_node.get(node, []):
            if profile == models.Profile.ECO.value:
                eco_s += c.time - since
            returned = previous is not None and c.profile == before_previous
            if returned and previous is not None and c.time - previous.time < flap_window_s:
                figures.flaps += 1
            before_previous = profile
            previous, profile, since = c, c.profile, c.time
        if profile == models.Profile.ECO.value:
            eco_s += end - since
    figures.eco_node_hours = eco_s / 3600
    return figures


def reaction_times(
    arrivals: Sequence[tuple[float, int]], samples: Sequence[tuple[float, int]]
) -> list[float]:
    """For each arrival (time, nodes needed after it) that the last sample before it does
    not cover, the time until a sample shows at least that many performance nodes;
    an arrival never covered (its demand left first) is not counted."""
    out: list[float] = []
    if not samples:
        return out
    times = [t for t, _ in samples]
    for at, need in arrivals:
        i = _first_at_or_after(times, at)
        if i is None:
            continue
        previous = samples[i - 1][1] if i > 0 else samples[i][1]
        if previous >= need:
            continue  # a node already performance absorbed it
        for t, have in samples[i:]:
            if have >= need:
                out.append(max(t - at, 0.0))
                break
    return out


def _first_at_or_after(times: Sequence[float], at: float) -> int | None:
    lo, hi = 0, len(times)
    while lo < hi:
        mid = (lo + hi) // 2
        if times[mid] < at:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < len(times) else None


def workload(
    *, seconds: float, rate: float, lifetime_s: float, seed: int
) -> list[tuple[float, str, str]]:
    """(offset, "add" | "del", pod name): Poisson arrivals, exponential lifetimes."""
    rng = random.Random(seed)
    events: list[tuple[float, str, str]] = []
    t, i = 0.0, 0
    while True:
        t += rng.expovariate(rate)
        if t >= seconds:
            break
        name = f"perf-{i}"
        events.append((t, "add", name))
        gone = t + rng.expovariate(1 / lifetime_s)
        if gone < seconds:
            events.append((gone, "del", name))
        i += 1
    return sorted(events)


# --- the run --------------------------------------------------------------------------------


class Sampler:
    """Counts performance nodes in the state record every ``interval`` seconds."""

    def __init__(self, state: store.RedisStore, *, interval: float = 0.25) -> None:
        self.state, self.interval = state, interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            records = self.state.fsm()
            have = sum(1 for r in records.values() if r.profile == "performance")
            self.samples.append((now, have))
            self._stop.wait(self.interval)

    def stop(self) -> list[tuple[float, int]]:
        self._stop.set()
        self._thread.join()
        return self.samples


def run_setting(
    bench: Bench, name: str, env: Mapping[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    bench.rc.flushdb()
    bench.remote.reset()
    bench.remote.set_latency(0)
    bench.remote.seed(
        args.nodes,
        1,
        seed=args.seed,
        mix={"none": 1.0},
        pending_fraction=0.0,
        terminal_fraction=0.0,
    )
    settings = {**POLICY, **env}
    with bench.workers(1, **settings):
        bench.converge(max_ticks=4)
        watch_env = dict(bench.base_env, **{k.upper(): v for k, v in settings.items()})
        watcher = Watcher(bench, watch_env)
        state = store.RedisStore(bench.redis.url)
        try:
            watcher.wait_synced()
            initial = {node: str(r.profile) for node, r in state.fsm().items()}
            held_before = _held(state)
            events = workload(
                seconds=args.minutes * 60,
                rate=args.rate,
                lifetime_s=args.lifetime,
                seed=args.seed + 1,
            )
            log(f"{name}: {len(initial)} nodes, {len(events)} pod events over {args.minutes} min")
            nodes = sorted(initial)
            churn = Churn(bench, nodes, rate=args.churn)
            sampler = Sampler(state)
            start = time.time()
            arrivals = _drive(bench, events, start=start)
            end = time.time()
            churn_events = churn.stop()
            samples = sampler.stop()
            wait_idle(bench.rc, timeout=600)
            since_ms = int(start * 1000) - 1
            changes = profile_changes(e.fields() for e in state.transitions(since_ms=since_ms))
            figures = analyse(changes, initial=initial, start=start, end=end)
            figures.reaction_s = reaction_times(arrivals, samples)
            held = {k: v - held_before.get(k, 0.0) for k, v in _held(state).items()}
        finally:
            state.close()
            watcher.stop()
    result = {
        "setting": name,
        "env": dict(env),
        "nodes": len(initial),
        "minutes": (end - start) / 60,
        "changes": figures.changes,
        "per_node_hour": figures.per_node_hour,
        "flaps": figures.flaps,
        "max_changes_one_node": figures.max_changes_one_node,
        "eco_node_hours": figures.eco_node_hours,
        "eco_share": figures.eco_node_hours / (len(initial) * (end - start) / 3600),
        "reaction_s": figures.reaction_s,
        "held": held,
        "churn_events": churn_events,
        "pod_events": len(events),
    }
    log(f"{name}: {json.dumps({k: v for k, v in result.items() if k != 'reaction_s'})}")
    return result


def _drive(
    bench: Bench, events: Sequence[tuple[float, str, str]], *, start: float
) -> list[tuple[float, int]]:
    """Replay the workload in real time; return (time, nodes needed) after each arrival."""
    live = 0
    arrivals = []
    stop = threading.Event()
    for offset, kind, name in events:
        delay = start + offset - time.time()
        if delay > 0:
            stop.wait(delay)
        if kind == "add":
            bench.remote.put_object(_pod(name, "perf", "selector-performance", None))
            live += 1
            arrivals.append((time.time(), math.ceil(live / PER_NODE)))
        else:
            bench.remote.delete_object("pods", name, "perf")
            live -= 1
    return arrivals


def _held(state: store.RedisStore) -> dict[str, float]:
    counters, _ = state.metric_values()
    out = {}
    for key, value in counters.items():
        name, labels = metrics.parse_field(key)
        if name == metrics.TRANSITIONS_HELD:
            out[labels.get("reason", "")] = value
    return out


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def render(results: Sequence[Mapping[str, Any]], *, command: str, machine: str) -> str:
    lines = [
        BEGIN,
        "## Flapping: watch mode without and with damping (issue 19)",
        "",
        f"`{command}` — {machine}",
        "",
        "| setting | profile changes | per node-hour | flaps (back within 5 min) "
        "| most changes, one node | eco node-hours (share) | reaction p50 / p95 (n) "
        "| holds started |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        env = ", ".join(f"`{k}={v}`" for k, v in r["env"].items()) or "none"
        react = r["reaction_s"]
        held = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["held"].items())) or "-"
        lines.append(
            f"| {r['setting']} ({env}) | {r['changes']} | {r['per_node_hour']:.2f} "
            f"| {r['flaps']} | {r['max_changes_one_node']} "
            f"| {r['eco_node_hours']:.2f} ({100 * r['eco_share']:.1f} %) "
            f"| {_pct(react, 0.5):.2f} s / {_pct(react, 0.95):.2f} s ({len(react)}) "
            f"| {held} |"
        )
    first = results[0] if results else {}
    lines += [
        "",
        f"{first.get('nodes', 0)} eligible nodes, {first.get('minutes', 0):.1f} min per "
        f"setting, {first.get('pod_events', 0)} performance-pod events and "
        f"~{first.get('churn_events', 0)} churn events per setting (same workload for each).",
        END,
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.flap")
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--minutes", type=float, default=8.0)
    p.add_argument("--rate", type=float, help="performance pods per second (default nodes/150)")
    p.add_argument("--lifetime", type=float, default=60.0, help="mean pod lifetime, seconds")
    p.add_argument("--churn", type=float, default=5.0, help="unconstrained pod events/s")
    p.add_argument("--dwell", default="1m")
    p.add_argument("--budget", default="1%")
    p.add_argument("--budget-window", default="1m")
    p.add_argument("--settings", default="none,dwell,budget")
    p.add_argument("--seed", type=int, default=19)
    p.add_argument("--out", type=Path)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.rate is None:
        args.rate = args.nodes / 150
    all_settings = {
        "none": {},
        "dwell": {"min_profile_dwell": args.dwell},
        "budget": {"downgrade_budget": args.budget, "downgrade_budget_window": args.budget_window},
    }
    command = "python -m bench.flap " + " ".join(argv if argv is not None else sys.argv[1:])
    results = []
    with tempfile.TemporaryDirectory(prefix="joulie-flap-bench-") as tmp:
        bench = Bench(Path(tmp), log=log)
        try:
            for name in args.settings.split(","):
                results.append(run_setting(bench, name, all_settings[name], args))
        finally:
            bench.close()
    load = os.getloadavg()
    machine = (
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {load[0]:.2f} "
        f"at the end; median reaction over arrivals that needed a new performance node."
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    text = render(results, command=command.strip(), machine=machine)
    print(text)
    if args.out:
        write_marked(args.out, text, begin=BEGIN, end=END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
