"""The measured scenarios: one process set (Redis, emulator), clusters seeded per size.

Every tick of joulie-tasks runs through the real workflow (the ``joulie.tick`` task
via the broker, the chain, the write batches) in separate worker processes; its
wall time is the tick's own ``duration_s`` (tick start to tick end) and its API
requests are the emulator's counters, reset before the tick and read after the
broker went idle again (Node events, sent by their own tasks after the tick, are
counted apart). The reference pattern (reference.py) runs in this process against
the same emulator, in between, never at the same time.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import REPO, reference
from joulie_tasks.adapters import store
from joulie_testbed.emulator import RemoteEmulator
from joulie_testbed.emulator import seed as seeding
from joulie_testbed.procs import EmulatorProc, RedisServer, Workers
from joulie_testbed.ticks import TickSender, wait_idle

WRITE_VERBS = ("create", "update", "patch", "delete")
INLINE_ARGS = ("reconcile", "--once", "--output", "json")
EVENTS = "events"
PERF_SHAPES = ("selector-performance", "in-performance", "or-terms", "notin-eco")
#: The emulator's default mix: 56 % unconstrained, 4 % of each other docs/SPEC.md §4 shape.
REALISTIC_MIX = dict(seeding.DEFAULT_MIX)
#: Same mix without performance-only pods: every planned downgrade goes through.
NO_PERF_MIX = {k: v for k, v in REALISTIC_MIX.items() if k not in PERF_SHAPES}
NO_PERF_MIX["none"] += sum(REALISTIC_MIX[k] for k in PERF_SHAPES)
#: Performance pods everywhere (~3 per node): nearly every eco node must be guarded.
GUARD_MIX = {**REALISTIC_MIX, "selector-performance": 0.16, "in-performance": 0.08}
GUARD_MIX["none"] -= 0.20


@dataclass
class Sample:
    """One measured tick (ours or the reference's)."""

    wall_s: float
    requests: Counter[str]
    writes: int
    write_phase_s: float = 0.0
    events: int = 0
    deferred: int = 0
    nodes: int = 0
    direction: str = ""
    #: The tick ran quiet: nothing had changed since the last converged tick.
    quiet: bool = False

    @property
    def total(self) -> int:
        return sum(self.requests.values())


@dataclass
class Cell:
    """Samples of one scenario at one (size, latency, workers, …)."""

    samples: list[Sample] = field(default_factory=list)

    def median(self, attr: str = "wall_s") -> float:
        values = [float(getattr(s, attr)) for s in self.samples]
        return statistics.median(values) if values else float("nan")

    def requests(self) -> Counter[str]:
        """Median count per request kind (they hardly vary between ticks)."""
        kinds = {k for s in self.samples for k in s.requests}
        return Counter(
            {k: int(statistics.median([s.requests.get(k, 0) for s in self.samples])) for k in kinds}
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "median_wall_s": self.median(),
            "median_write_phase_s": self.median("write_phase_s"),
            "median_requests": dict(self.requests()),
            "samples": [
                {
                    "wall_s": s.wall_s,
                    "write_phase_s": s.write_phase_s,
                    "requests": dict(s.requests),
                    "writes": s.writes,
                    "events": s.events,
                    "deferred": s.deferred,
                    "nodes": s.nodes,
                    "direction": s.direction,
                }
                for s in self.samples
            ],
        }


def _kinds(counts: Mapping[tuple[str, str], int]) -> tuple[Counter[str], int]:
    """Emulator counters as ``verb resource`` → n, with Node events split off."""
    out: Counter[str] = Counter()
    events = 0
    for (verb, resource), n in counts.items():
        if resource == EVENTS:
            events += n
        else:
            out[f"{verb} {resource}"] += n
    return out, events


def _writes(kinds: Mapping[str, int]) -> int:
    return sum(n for k, n in kinds.items() if k.split()[0] in WRITE_VERBS)


class Bench:
    """Redis + the emulator process + helpers to run ticks of either kind."""

    def __init__(self, workdir: Path, *, log: Any = print) -> None:
        self.workdir = workdir
        self.log = log
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(workdir / "redis").start()
        self.emulator = EmulatorProc(workdir)
        self.remote = RemoteEmulator(self.emulator.url, timeout=600)
        self.ticks = TickSender(self.redis.url)
        self.rc = self.redis.client()
        self.ref = reference.LeanClient(self.emulator.url)
        self.base_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("JOULIE", "CELERY"))},
            "REDIS_URL": self.redis.url,
            "KUBECONFIG": str(self.emulator.kubeconfig),
            "RECONCILE_INTERVAL": "1h",  # only the bench's ticks run
            "PYTHONUNBUFFERED": "1",
        }
        self.peak_rss_mb: dict[int, float] = {}
        self._size = 0

    def close(self) -> None:
        self.ref.close()
        self.ticks.close()
        self.rc.close()
        self.emulator.stop()
        self.redis.stop()

    # --- set-up ----------------------------------------------------------------------------

    def seed(self, nodes: int, mix: Mapping[str, float], *, seed: int) -> dict[str, int]:
        """A fresh cluster and a fresh Redis (no worker may run meanwhile)."""
        self._size = nodes
        self.rc.flushdb()
        self.remote.reset()
        self.remote.set_latency(0)
        return self.remote.seed(
            nodes,
            10,
            seed=seed,
            reserved=nodes * 6 // 100,
            unschedulable=nodes * 5 // 100,
            pending_fraction=0.1,
            terminal_fraction=0.05,
            mix=dict(mix),
        )

    @contextlib.contextmanager
    def workers(self, count: int, **settings: object) -> Iterator[Workers]:
        env = dict(self.base_env)
        env.update({k.upper(): str(v) for k, v in settings.items()})
        tag = f"n{self._size}-w{count}-{int(time.time() * 1000) % 10**8}"
        ws = Workers(count, env=env, workdir=self.workdir / "logs", tag=tag)
        try:
            self._warm_up(count)
            yield ws
            rss = ws.peak_rss_mb()
            if rss:
                self.peak_rss_mb[self._size] = max(self.peak_rss_mb.get(self._size, 0.0), *rss)
        finally:
            ws.stop()

    def _warm_up(self, count: int) -> None:
        """Give fresh workers their Kubernetes client and Redis connection before a
        measured tick: real workers are long-lived, only this benchmark restarts them.
        An empty ``joulie.send_events`` builds both and writes nothing."""
        for _ in range(3 * count):
            self.ticks.app.send_task("joulie.send_events", args=([],))
        wait_idle(self.rc, timeout=120)

    # --- ticks -----------------------------------------------------------------------------

    def our_tick(self, *, timeout: float = 900) -> Sample:
        wait_idle(self.rc, timeout=timeout)
        self.remote.reset_counters()
        summary = self.ticks.run(timeout=timeout)
        wait_idle(self.rc, timeout=timeout)  # Node events go out after the tick
        kinds, events = _kinds(self.remote.counters())
        return Sample(
            wall_s=float(summary["duration_s"]),
            requests=kinds,
            writes=int(summary["written"]),
            write_phase_s=float(summary.get("write_phase_s") or 0.0),
            events=events,
            deferred=int(summary.get("deferred") or 0),
            nodes=int(summary["nodes"]),
            quiet=bool(summary.get("quiet")),
        )

    def converge(self, *, max_ticks: int = 4) -> Sample:
        """Tick until a tick writes nothing (bounded)."""
        sample = self.our_tick()
        for _ in range(max_ticks - 1):
            if sample.writes == 0:
                break
            sample = self.our_tick()
        if sample.writes:
            raise RuntimeError(f"did not converge in {max_ticks} ticks")
        return sample

    def ref_tick(self, cfg: reference.RefConfig) -> Sample:
        self.remote.reset_counters()
        result = reference.run_tick(self.ref, cfg)
        kinds, _ = _kinds(self.remote.counters())
        return Sample(
            wall_s=result.wall_s,
            requests=kinds,
            writes=_writes(kinds),
            nodes=result.nodes,
        )

    # --- Redis ----------------------------------------------------------------------------

    def redis_memory(self) -> dict[str, float]:
        """Bytes used by Redis in all, and by the FSM hash and the transition stream."""
        info = self.rc.info("memory")
        fsm = self.rc.memory_usage(store.FSM_KEY, samples=0) or 0
        stream = self.rc.memory_usage(store.TRANSITIONS_KEY, samples=0) or 0
        return {
            "used_memory_mb": int(info["used_memory"]) / 2**20,
            "fsm_mb": int(fsm) / 2**20,
            "stream_mb": int(stream) / 2**20,
            "stream_entries": float(self.rc.xlen(store.TRANSITIONS_KEY)),
            "fsm_nodes": float(self.rc.hlen(store.FSM_KEY)),
        }

    def inline_tick(self) -> float:
        """``joulie-tasks reconcile --once`` (one process, same stages): its duration_s."""
        import json

        out = subprocess.run(
            [sys.executable, "-m", "joulie_tasks", "--log-level", "WARNING", *INLINE_ARGS],
            env=self.base_env,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=REPO,
            check=True,
        )
        return float(json.loads(out.stdout)["duration_s"])


def medians(cells: Sequence[Cell]) -> list[float]:
    return [c.median() for c in cells]
