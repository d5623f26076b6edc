"""``python -m bench.run --first-tick``: the all-writes first tick against the reference.

    .venv/bin/python -m bench.run --first-tick          # N = 2,000, 2 ms, 2 workers, both
    .venv/bin/python -m bench.run --first-tick --first-output-api nodepowerprofile
    .venv/bin/python -m bench.run --first-tick --first-nodes 500 --out /tmp/ft.md

A freshly seeded cluster (N managed nodes, 10 pods each, no performance-only pod;
6 % reserved, 5 % unschedulable) that has never seen the operator: every eligible
node gets its labels patched and its NodePowerProfile and/or NodeTwin created (and
the twin's status patched), so this is the tick with the most writes (issue 20's
"all-writes first tick"). OUTPUT_API defaults to ``both`` (4 writes per node), the
mode whose ratio matches the issue's "today 0.37x". Processes as in
bench/run.py: redis-server, the API emulator in its own process (every request
delayed by the latency), the Celery workers (prefork, concurrency 1, warmed up) and
this client, on the same cores.

- joulie-tasks, **whole process**: from sending the tick to the broker being idle
  again (the chain, every write batch and anything sent after the tick), on this
  client's clock; the tick's own ``duration_s`` is shown beside it.
- the reference (bench/reference.py) on the same cluster seeded again, its own first
  tick: a GET (404) and a POST per profile, a GET and a PATCH per node, one pod list
  per node planned eco.

Both run with the same STATIC_HP_FRAC; ratio = joulie-tasks whole process / reference.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import reference, write_marked
from bench.scenarios import NO_PERF_MIX, Bench, Sample
from joulie_testbed.procs import cpu_seconds

BEGIN = "<!-- first-tick-bench:begin -->"
END = "<!-- first-tick-bench:end -->"
SEED = 2020


@dataclass
class FirstTick:
    """The samples of one first-tick comparison."""

    nodes: int
    latency_ms: float
    workers: int
    static_hp_frac: float
    output_api: str
    #: WRITE_CONCURRENCY of the workers (None: the default).
    write_concurrency: int | None = None
    ours_whole_s: list[float] = field(default_factory=list)
    #: CPU seconds the workers' pool processes used in the tick (less noisy than time).
    ours_cpu_s: list[float] = field(default_factory=list)
    #: CPU seconds the API emulator used meanwhile (it shares the cores).
    emulator_cpu_s: list[float] = field(default_factory=list)
    ours: list[Sample] = field(default_factory=list)
    ref: list[Sample] = field(default_factory=list)

    def ratio(self) -> float:
        ref = statistics.median(s.wall_s for s in self.ref)
        return statistics.median(self.ours_whole_s) / ref

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes,
            "latency_ms": self.latency_ms,
            "workers": self.workers,
            "static_hp_frac": self.static_hp_frac,
            "output_api": self.output_api,
            "write_concurrency": self.write_concurrency,
            "ours_whole_s": self.ours_whole_s,
            "ours_cpu_s": self.ours_cpu_s,
            "emulator_cpu_s": self.emulator_cpu_s,
            "ours_duration_s": [s.wall_s for s in self.ours],
            "ours_write_phase_s": [s.write_phase_s for s in self.ours],
            "ours_requests": [dict(s.requests) for s in self.ours],
            "ours_events": [s.events for s in self.ours],
            "ref_s": [s.wall_s for s in self.ref],
            "ref_requests": [dict(s.requests) for s in self.ref],
            "ratio": self.ratio(),
        }


def _fresh(bench: Bench, n: int, latency_ms: float) -> None:
    bench.seed(n, NO_PERF_MIX, seed=SEED)
    bench.remote.set_latency(latency_ms)


def measure(
    bench: Bench,
    *,
    n: int,
    latency_ms: float,
    workers: int,
    repeats: int,
    static_hp_frac: float,
    output_api: str,
    write_concurrency: int | None,
    log: Callable[[str], None],
) -> FirstTick:
    """``repeats`` first ticks of ours, then of the reference's, each on a cluster
    seeded afresh (seeding flushes Redis, so the workers start after it)."""
    res = FirstTick(n, latency_ms, workers, static_hp_frac, output_api, write_concurrency)
    settings: dict[str, object] = {"static_hp_frac": static_hp_frac, "output_api": output_api}
    if write_concurrency is not None:
        settings["write_concurrency"] = write_concurrency
    for i in range(repeats):
        _fresh(bench, n, latency_ms)
        with bench.workers(workers, **settings) as ws:
            pids = ws.pool_pids()
            cpu = sum(cpu_seconds(p) for p in pids)
            emulator_cpu = cpu_seconds(bench.emulator.pid)
            # our_tick: counters reset, tick sent, broker idle again (a few ms of
            # polling either side of the tick's own work)
            started = time.perf_counter()
            sample = bench.our_tick()
            whole = time.perf_counter() - started
            res.ours_cpu_s.append(sum(cpu_seconds(p) for p in pids) - cpu)
            res.emulator_cpu_s.append(cpu_seconds(bench.emulator.pid) - emulator_cpu)
        res.ours_whole_s.append(whole)
        res.ours.append(sample)
        log(f"first tick {i + 1}/{repeats}: ours {whole:.2f} s (tick {sample.wall_s:.2f} s)")
    cfg = reference.RefConfig(static_hp_frac=static_hp_frac)
    for i in range(repeats):
        _fresh(bench, n, latency_ms)
        res.ref.append(bench.ref_tick(cfg))
        log(f"first tick {i + 1}/{repeats}: reference {res.ref[-1].wall_s:.2f} s")
    return res


def _req(sample: Sample) -> str:
    parts = [f"{k} {v:,}" for k, v in sorted(sample.requests.items()) if v]
    return f"**{sample.total:,}**: " + ", ".join(parts)


def render(res: FirstTick, *, command: str, load: tuple[str, str]) -> str:
    ours = res.ours[len(res.ours) // 2]
    ref = res.ref[len(res.ref) // 2]
    whole = statistics.median(res.ours_whole_s)
    ref_s = statistics.median(s.wall_s for s in res.ref)
    tick = statistics.median(s.wall_s for s in res.ours)
    concurrency = (
        "" if res.write_concurrency is None else f", WRITE_CONCURRENCY={res.write_concurrency}"
    )
    phase = statistics.median(s.write_phase_s for s in res.ours)
    return "\n".join(
        [
            BEGIN,
            "### Measured by the benchmark",
            "",
            f"Command: `{command}`. Python {platform.python_version()}, {os.cpu_count()} CPUs, "
            f"load average {load[0]} at the start, {load[1]} at the end.",
            "",
            f"N = {res.nodes:,} nodes seeded ({ours.nodes:,} eligible), 10 pods each, "
            f"emulator latency {res.latency_ms:g} ms, {res.workers} workers, "
            f"STATIC_HP_FRAC={res.static_hp_frac:g}, OUTPUT_API={res.output_api}{concurrency}; "
            f"medians of {len(res.ours)} runs each "
            f"(ours: {', '.join(f'{x:.2f}' for x in res.ours_whole_s)} s; reference: "
            f"{', '.join(f'{s.wall_s:.2f}' for s in res.ref)} s).",
            "",
            "| | whole process | tick (`duration_s`) | write phase | CPU: workers, emulator | "
            "requests (+ events) |",
            "|---|---|---|---|---|---|",
            f"| joulie-tasks | **{whole:.2f} s** | {tick:.2f} s | {phase:.2f} s | "
            f"{statistics.median(res.ours_cpu_s):.2f} s, "
            f"{statistics.median(res.emulator_cpu_s):.2f} s | {_req(ours)} (+{ours.events}) |",
            f"| reference | **{ref_s:.2f} s** | | | | {_req(ref)} |",
            "",
            f"Ratio (whole process / reference): **{res.ratio():.2f}x**.",
            END,
        ]
    )


def run(
    *, n: int, latency_ms: float, workers: int, repeats: int, static_hp_frac: float,
    output_api: str, write_concurrency: int | None, workdir: Path, out: Path | None,
    command: str, log: Callable[[str], None],
) -> tuple[str, FirstTick]:  # fmt: skip
    """Measure and write the section between its markers into ``out``."""
    start_load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    bench = Bench(workdir, log=log)
    try:
        res = measure(
            bench,
            n=n,
            latency_ms=latency_ms,
            workers=workers,
            repeats=repeats,
            static_hp_frac=static_hp_frac,
            output_api=output_api,
            write_concurrency=write_concurrency,
            log=log,
        )
    finally:
        bench.close()
    end_load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = render(res, command=command, load=(start_load, end_load))
    if out is not None:
        write_marked(out, text, begin=BEGIN, end=END)
    return text, res
