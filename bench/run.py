"""``python -m bench.run``: the scale benchmark, and docs/BENCHMARKS.md.

    .venv/bin/python -m bench.run            # N = 100, 1,000, 5,000, 10,000 (~35 min on 2 cores)
    .venv/bin/python -m bench.run --quick    # N = 100, 1,000, few repeats (~4 min)
    .venv/bin/python -m bench.run --sizes 100,1000 --latencies 0 --out /tmp/b.md
    .venv/bin/python -m bench.run --real-server  # kube-apiserver beside the emulator (~4 min)
    .venv/bin/python -m bench.run --output-api nodepowerprofile,nodetwin,both  # (~4 min)
    .venv/bin/python -m bench.run --first-tick  # all-writes first tick, N=2,000 (~3 min)

Per size N (managed nodes, 10 pods each; 6 % reserved, 5 % unschedulable; 10 %
pending and 5 % terminal pods) and per emulator latency (0 and 2 ms):

- steady tick (realistic constraint mix, STATIC_HP_FRAC=0.5, converged first);
- guard-heavy tick (performance pods on ~94 % of nodes, half the nodes planned eco);
- full flip (no performance pods; STATIC_HP_FRAC 1 -> 0 -> 1 ..., every node's labels
  and profile rewritten) with 1, 2 and 4 workers, and, at one size, the write phase
  with WRITE_CONCURRENCY=1 for the horizontal-scaling target;
- the reference call pattern (bench/reference.py) on the same cluster, in between;
- peak RSS of the worker processes, Redis memory (FSM hash, transition stream);
- at N = 10: the Celery chain's per-tick overhead, and ``reconcile --once`` beside it.

``--real-server`` runs only the real-server scale point (bench/realserver.py: 1,000
nodes / 10,000 pods on a real kube-apiserver and on the emulator, needs
KUBEBUILDER_ASSETS) and rewrites only its section of the report; a full run keeps
that section as it is.

``--output-api MODES`` runs only bench/nodetwin.py (each OUTPUT_API mode at ``--nodes``,
default 1,000: first tick, steady list-fed and cache-fed ticks, full flips, the twins'
status refresh) and rewrites only its marked section of the report.

``--first-tick`` runs only bench/firsttick.py (issue 20: the all-writes first tick at
``--first-nodes`` = 2,000, ``--first-latency`` = 2 ms, ``--first-workers`` = 2, the whole
process against the reference's first tick) and rewrites only its marked section.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import REPO, firsttick, nodetwin, realserver, reference
from bench.scenarios import GUARD_MIX, NO_PERF_MIX, REALISTIC_MIX, Bench, Cell, Sample

LATENCIES = (0.0, 2.0)
WORKER_COUNTS = (1, 2, 4)


@dataclass
class Plan:
    sizes: list[int]
    latencies: list[float]
    steady_repeats: int
    ref_repeats: int
    flip_pairs: int
    flip_latencies: list[float]
    scaling_flips: int
    scaling_size: int
    chain_repeats: int
    quick: bool

    def ref_count(self, n: int, latency: float) -> int:
        """Reference ticks are long at scale: fewer of them (its timing barely varies)."""
        return 1 if n >= 5000 else self.ref_repeats

    def steady_count(self, n: int) -> int:
        return min(self.steady_repeats, 3) if n >= 5000 else self.steady_repeats

    def pairs(self, n: int) -> int:
        """Flip pairs per worker count: small ticks are cheap and noisy, so more of them."""
        return self.flip_pairs if n >= 5000 or self.quick else 2 * self.flip_pairs


@dataclass
class Results:
    """Everything measured, keyed ``"{scenario}|{n}|{latency}|{extra}"``."""

    cells: dict[str, Cell] = field(default_factory=dict)
    memory: dict[int, dict[str, float]] = field(default_factory=dict)
    rss: dict[int, float] = field(default_factory=dict)
    eligible: dict[int, int] = field(default_factory=dict)
    chain: Cell = field(default_factory=Cell)
    inline: list[float] = field(default_factory=list)

    def cell(self, *key: object) -> Cell:
        return self.cells.setdefault("|".join(str(k) for k in key), Cell())

    def get(self, *key: object) -> Cell | None:
        return self.cells.get("|".join(str(k) for k in key))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def lat_key(latency: float) -> str:
    return f"{latency:g}ms"


# --- scenarios ------------------------------------------------------------------------------


def steady_and_guard(bench: Bench, res: Results, plan: Plan, n: int) -> None:
    for scenario, mix in (("steady", REALISTIC_MIX), ("guard", GUARD_MIX)):
        bench.seed(n, mix, seed=n)
        with bench.workers(1, static_hp_frac=0.5):
            first = bench.converge()
            res.eligible[n] = first.nodes
            for latency in plan.latencies:
                bench.remote.set_latency(latency)
                for _ in range(plan.steady_count(n)):
                    res.cell(scenario, n, lat_key(latency), "ours").samples.append(bench.our_tick())
                ref_ticks = plan.ref_count(n, latency)
                if scenario == "guard" and latency > 0 and n >= 5000:
                    ref_ticks = 0  # the same requests as its steady tick: see the doc
                for _ in range(ref_ticks):
                    res.cell(scenario, n, lat_key(latency), "ref").samples.append(
                        bench.ref_tick(reference.RefConfig(static_hp_frac=0.5))
                    )
                ours = res.cell(scenario, n, lat_key(latency), "ours")
                log(f"N={n} {scenario} {latency:g}ms: ours {ours.median():.3f}s")
            bench.remote.set_latency(0)


def flips(bench: Bench, res: Results, plan: Plan, n: int) -> None:
    bench.seed(n, NO_PERF_MIX, seed=n + 1)
    with bench.workers(1, static_hp_frac=1):
        bench.converge()
    state = 1  # every eligible node is performance
    for latency in plan.flip_latencies:
        bench.remote.set_latency(latency)
        for count in WORKER_COUNTS:
            for _ in range(2 * plan.pairs(n)):
                state = 1 - state
                with bench.workers(count, static_hp_frac=state):
                    sample = bench.our_tick()
                sample.direction = "eco" if state == 0 else "performance"
                res.cell("flip", n, lat_key(latency), count).samples.append(sample)
            cell = res.cell("flip", n, lat_key(latency), count)
            log(f"N={n} flip {latency:g}ms {count}w: {cell.median():.2f}s")
        # The reference's all-writes tick, towards eco first (with its pod lists).
        for i in range(max(1, plan.ref_count(n, latency))):
            state = 1 - state
            sample = bench.ref_tick(reference.RefConfig(static_hp_frac=state))
            sample.direction = "eco" if state == 0 else "performance"
            res.cell("flip", n, lat_key(latency), "ref").samples.append(sample)
            if i == 0 and sample.direction != "eco":
                log("note: the reference flip ran towards performance (no pod lists)")
        ref_wall = res.cell("flip", n, lat_key(latency), "ref").median()
        log(f"N={n} flip {latency:g}ms ref: {ref_wall:.2f}s")
        if n == plan.scaling_size and latency == max(plan.latencies):
            for count in WORKER_COUNTS:
                for _ in range(plan.scaling_flips):
                    state = 1 - state
                    with bench.workers(count, static_hp_frac=state, write_concurrency=1):
                        sample = bench.our_tick()
                    res.cell("scaling", n, lat_key(latency), count).samples.append(sample)
                cell = res.cell("scaling", n, lat_key(latency), count)
                phase = cell.median("write_phase_s")
                log(f"N={n} WRITE_CONCURRENCY=1 {count}w: write phase {phase:.2f}s")
    bench.remote.set_latency(0)
    res.memory[n] = bench.redis_memory()


def chain_overhead(bench: Bench, res: Results, plan: Plan) -> None:
    bench.seed(10, REALISTIC_MIX, seed=10)
    with bench.workers(1):
        bench.converge()
        for _ in range(plan.chain_repeats):
            res.chain.samples.append(bench.our_tick())
    for _ in range(max(3, plan.chain_repeats // 2)):
        res.inline.append(bench.inline_tick())
    log(f"N=10 chain: {res.chain.median() * 1000:.1f} ms per tick")


# --- report ---------------------------------------------------------------------------------


def fmt_s(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def fmt_req(counts: Counter[str]) -> str:
    short = {
        "list nodes": "L nodes",
        "list pods": "L pods",
        "list nodepowerprofiles": "L npp",
        "get nodes": "G nodes",
        "get nodepowerprofiles": "G npp",
        "update nodepowerprofiles": "PUT npp",
        "create nodepowerprofiles": "POST npp",
        "patch nodes": "PATCH nodes",
    }
    parts = [f"{short.get(k, k)} {v:,}" for k, v in sorted(counts.items()) if v]
    return f"**{sum(counts.values()):,}**: " + ", ".join(parts) if parts else "0"


def ratio(ours: float, ref: float) -> str:
    if math.isnan(ours) or math.isnan(ref) or ref <= 0:
        return "-"
    return f"1/{ref / ours:.1f}" if ours < ref else f"{ours / ref:.2f}x"


def machine() -> list[str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    redis_v = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    redis_version = next((w.split("=")[1] for w in redis_v if w.startswith("v=")), "?")
    return [
        f"- CPU: {os.cpu_count()} x {cpu}; RAM {mem_gb:.0f} GiB; {platform.platform()}",
        f"- Python {platform.python_version()}, redis-server {redis_version}",
    ]


def report(res: Results, plan: Plan, *, command: str, started: float, loads: list[str]) -> str:
    lines: list[str] = []
    add = lines.append
    add("# Benchmarks: joulie-tasks at scale, against the reference call pattern")
    add("")
    add(f"Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}")
    add(f"in {(time.time() - started) / 60:.1f} min. Machine:")
    add("")
    lines += machine()
    add(f"- load average at start / end: {loads[0]} / {loads[-1]}")
    add("")
    add(
        "Redis, the API emulator (its own process, `python -m joulie_testbed.emulator`), the "
        "Celery workers (`--pool=prefork --concurrency=1`, one process each) and this "
        "benchmark client (which also runs the reference pattern) all share these cores. "
        "With 4 workers there are more busy processes than cores, so 4 workers can only "
        "overlap waiting, not computing. Latency is the emulator's per-request delay (every "
        "API request, lists included). Times are medians of the ticks run (joulie-tasks: "
        "the tick summary's `duration_s`, tick start to tick end); requests are counted "
        "by the emulator. Node Events (sent by their own tasks after a tick ends, never "
        "inside one) are listed apart."
    )
    add("")
    add(
        "Clusters: N managed nodes (6 % reserved, 5 % unschedulable: the eligible count is "
        "shown), 10 pods per node (10 % pending, 5 % Succeeded/Failed). Reference: "
        "bench/reference.py — one thread, `http.client` + raw JSON, the reference "
        "operator's calls (list nodes; one pod list per node planned eco with "
        "`fieldSelector=spec.nodeName=`; per eligible node GET + PUT/POST of its "
        "NodePowerProfile every tick, GET of the node, PATCH of its labels when they differ)."
    )
    add("")
    _steady_table(res, plan, lines)
    _flip_table(res, plan, lines)
    _scaling_table(res, plan, lines)
    _resources_table(res, plan, lines)
    _chain(res, lines)
    _targets(res, plan, lines)
    lines.append((Path(__file__).parent / "findings.md").read_text())
    return "\n".join(lines) + "\n"


def _steady_table(res: Results, plan: Plan, lines: list[str]) -> None:
    for scenario, title, note in (
        ("steady", "Steady tick (nothing changes)", "realistic constraint mix, STATIC_HP_FRAC=0.5"),
        (
            "guard",
            "Guard-heavy tick (half the nodes planned eco, performance pods on ~94 % of nodes)",
            "steady state: every such node stays draining and a deferred transition is "
            "recorded for it every tick",
        ),
    ):
        lines += [f"## {title}", "", f"{note}.", ""]
        lines.append(
            "| N (eligible) | latency | joulie-tasks | requests | writes | reference | "
            "requests | writes | ratio |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for n in plan.sizes:
            for latency in plan.latencies:
                ours = res.get(scenario, n, lat_key(latency), "ours")
                ref = res.get(scenario, n, lat_key(latency), "ref")
                if ours is None:
                    continue
                ref_wall = ref.median() if ref and ref.samples else float("nan")
                lines.append(
                    f"| {n:,} ({res.eligible.get(n, 0):,}) | {latency:g} ms | "
                    f"{fmt_s(ours.median())} | {fmt_req(ours.requests())} | "
                    f"{max(s.writes for s in ours.samples)} | "
                    f"{fmt_s(ref_wall)} | "
                    f"{fmt_req(ref.requests()) if ref and ref.samples else '-'} | "
                    f"{int(ref.median('writes')) if ref and ref.samples else '-'} | "
                    f"{ratio(ours.median(), ref_wall)} |"
                )
        if scenario == "guard":
            lines.append("")
            lines.append(
                "Deferred transitions per joulie-tasks tick: "
                + ", ".join(
                    f"N={n:,}: {int(c.median('deferred')):,}"
                    for n in plan.sizes
                    if (c := res.get("guard", n, lat_key(plan.latencies[0]), "ours"))
                )
                + ". The reference's guard-heavy tick at 2 ms is not run at N ≥ 5,000: it "
                "makes exactly the requests of its steady tick (one pod list per eco node)."
            )
        lines.append("")


def _flip_table(res: Results, plan: Plan, lines: list[str]) -> None:
    lines += [
        "## Full flip (every eligible node changes profile)",
        "",
        "No performance pods; STATIC_HP_FRAC alternates 1 → 0 → 1 (workers restarted with "
        "the new value between ticks, unmeasured). Every node: one label PATCH and one "
        "NodePowerProfile PUT. joulie-tasks with the default WRITE_BATCH_SIZE=100 and "
        "WRITE_CONCURRENCY=8; write phase = batches handed out → last batch done "
        "(`write_phase_s`). The reference's all-writes tick is its flip towards eco "
        "(one pod list per node, GET+PUT profile, GET+PATCH node).",
        "",
        "| N | latency | workers | joulie-tasks | write phase | requests (+ events) | "
        "reference | requests | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in plan.sizes:
        for latency in plan.flip_latencies:
            ref = res.get("flip", n, lat_key(latency), "ref")
            eco = [s for s in ref.samples if s.direction == "eco"] if ref else []
            ref_cell = Cell(eco or (ref.samples if ref else []))
            for count in WORKER_COUNTS:
                ours = res.get("flip", n, lat_key(latency), count)
                if ours is None:
                    continue
                lines.append(
                    f"| {n:,} | {latency:g} ms | {count} | {fmt_s(ours.median())} | "
                    f"{fmt_s(ours.median('write_phase_s'))} | {fmt_req(ours.requests())} "
                    f"(+{int(ours.median('events')):,}) | {fmt_s(ref_cell.median())} | "
                    f"{fmt_req(ref_cell.requests()) if ref_cell.samples else '-'} | "
                    f"{ratio(ours.median(), ref_cell.median())} |"
                )
    lines.append("")


def _scaling_table(res: Results, plan: Plan, lines: list[str]) -> None:
    latency = lat_key(max(plan.latencies))
    n = plan.scaling_size
    cells = {c: res.get("scaling", n, latency, c) for c in WORKER_COUNTS}
    if not all(cells.values()):
        return
    base = cells[1].median("write_phase_s")  # type: ignore[union-attr]
    lines += [
        f"## Horizontal scaling: full flip, N = {n:,}, {latency}, WRITE_CONCURRENCY=1",
        "",
        "| workers | tick | write phase | speed-up of the write phase |",
        "|---|---|---|---|",
    ]
    for count, cell in cells.items():
        assert cell is not None
        phase = cell.median("write_phase_s")
        lines.append(f"| {count} | {fmt_s(cell.median())} | {fmt_s(phase)} | {base / phase:.2f}x |")
    lines.append("")


def _resources_table(res: Results, plan: Plan, lines: list[str]) -> None:
    lines += [
        "## Memory",
        "",
        "Peak RSS (VmHWM) of the worker processes that ran tasks, highest over every "
        "scenario at that size; Redis measured after the flips (FSM hash of every managed "
        "node; transition stream capped near TRANSITION_STREAM_MAXLEN=10,000 entries).",
        "",
        "| N | pods | worker peak RSS | Redis used_memory | FSM hash | transition stream |",
        "|---|---|---|---|---|---|",
    ]
    for n in plan.sizes:
        mem = res.memory.get(n)
        if mem is None:
            continue
        lines.append(
            f"| {n:,} | {n * 10:,} | {res.rss.get(n, float('nan')):.0f} MiB | "
            f"{mem['used_memory_mb']:.1f} MiB | {mem['fsm_mb']:.2f} MiB "
            f"({int(mem['fsm_nodes']):,} nodes) | {mem['stream_mb']:.2f} MiB "
            f"({int(mem['stream_entries']):,} entries) |"
        )
    lines.append("")


def _chain(res: Results, lines: list[str]) -> None:
    if not res.chain.samples:
        return
    inline = sorted(res.inline)[len(res.inline) // 2] if res.inline else float("nan")
    lines += [
        "## Per-tick overhead of the Celery chain (N = 10, 0 ms)",
        "",
        f"Median tick through the chain (tick → snapshot → classify → plan → guard → "
        f"write, 1 worker): **{res.chain.median() * 1000:.1f} ms** over "
        f"{len(res.chain.samples)} ticks (min {min(s.wall_s for s in res.chain.samples) * 1000:.1f}"
        f" ms). The same tick in one process (`joulie-tasks reconcile --once`, same stages, "
        f"lock and FSM; its own duration, without interpreter start-up): "
        f"{inline * 1000:.1f} ms.",
        "",
    ]


def _check(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def _targets(res: Results, plan: Plan, lines: list[str]) -> None:
    lines += ["## Targets", ""]
    _speed_targets(res, plan, lines)
    _scale_targets(res, plan, lines)
    if plan.quick:
        lines.append("")
        lines.append(
            "(`--quick`: N <= 1,000 only; the N = 5,000 / 10,000 targets are not checked.)"
        )
    lines.append("")


def _speed_targets(res: Results, plan: Plan, lines: list[str]) -> None:
    lists = ("list nodes", "list pods", "list nodepowerprofiles")
    # steady requests: only the 3 lists (and their pages), 0 writes, at every N
    only_lists = all(
        set(c.requests()) <= set(lists) and all(s.writes == 0 for s in c.samples)
        for k, c in res.cells.items()
        if k.startswith("steady|") and k.endswith("|ours")
    )
    pages = ", ".join(
        f"N={n:,}: {c.requests().total()}"
        for n in plan.sizes
        if (c := res.get("steady", n, "0ms", "ours"))
    )
    lines.append(
        f"- Steady tick requests ≤ 3 lists + their pages, 0 writes, at every N: "
        f"{_check(only_lists)} (requests per tick, all of them paged lists: {pages})."
    )
    n = 5000 if 5000 in plan.sizes else max(plan.sizes)
    for latency, bound in ((0.0, 3), (2.0, 10)):
        ours = res.get("steady", n, lat_key(latency), "ours")
        ref = res.get("steady", n, lat_key(latency), "ref")
        if ours and ref and ref.samples:
            r = ours.median() / ref.median()
            lines.append(
                f"- Steady tick at N={n:,}, {latency:g} ms ≤ 1/{bound} of the reference: "
                f"{_check(r <= 1 / bound)} ({fmt_s(ours.median())} vs {fmt_s(ref.median())}, "
                f"1/{1 / r:.1f})."
            )
    flip2 = res.get("flip", n, "2ms", 2)
    ref2 = res.get("flip", n, "2ms", "ref")
    if flip2 and ref2 and ref2.samples:
        eco = Cell([s for s in ref2.samples if s.direction == "eco"] or ref2.samples)
        r = flip2.median() / eco.median()
        lines.append(
            f"- Full flip at N={n:,}, 2 ms, 2 workers ≤ 1/4 of the reference's all-writes "
            f"tick: {_check(r <= 0.25)} ({fmt_s(flip2.median())} vs {fmt_s(eco.median())}, "
            f"1/{1 / r:.1f})."
        )


def _scale_targets(res: Results, plan: Plan, lines: list[str]) -> None:
    sc = [
        res.get("scaling", plan.scaling_size, lat_key(max(plan.latencies)), c)
        for c in WORKER_COUNTS
    ]
    if all(sc):
        p1, p2, p4 = (c.median("write_phase_s") for c in sc)  # type: ignore[union-attr]
        lines.append(
            f"- WRITE_CONCURRENCY=1: 2 workers ≥ 1.6x faster write phase than 1, 4 no slower "
            f"than 2 (N={plan.scaling_size:,}): {_check(p1 / p2 >= 1.6 and p4 <= p2 * 1.05)} "
            f"({fmt_s(p1)} → {fmt_s(p2)} → {fmt_s(p4)}: {p1 / p2:.2f}x, {p1 / p4:.2f}x; "
            "4 vs 2 within 5 % counts as no slower)."
        )
    slower = []
    for size in plan.sizes:
        for latency in plan.latencies:
            walls = [res.get("flip", size, lat_key(latency), c) for c in WORKER_COUNTS]
            if all(walls):
                m = [w.median() for w in walls]  # type: ignore[union-attr]
                for a, b, ca, cb in ((m[0], m[1], 1, 2), (m[1], m[2], 2, 4)):
                    if b > a * 1.10 and b - a > 0.05:
                        slower.append(
                            f"N={size:,} {latency:g} ms: {ca}→{cb} workers {fmt_s(a)}→{fmt_s(b)}"
                        )
    lines.append(
        "- Default concurrency: adding workers never slows a flip tick (beyond 10 % noise): "
        + (_check(not slower) + (" (" + "; ".join(slower) + ")" if slower else "") + ".")
    )
    big = max(plan.sizes)
    if big in res.rss:
        lines.append(
            f"- Worker RSS ≤ 400 MB at N={big:,} ({big * 10:,} pods): "
            f"{_check(res.rss[big] * 1.048576 <= 400)} ({res.rss[big]:.0f} MiB peak)."
        )
    if big in res.memory:
        mem = res.memory[big]
        both = mem["fsm_mb"] + mem["stream_mb"]
        lines.append(
            f"- Redis memory for FSM + transition stream ≤ 50 MB at N={big:,}: "
            f"{_check(both * 1.048576 <= 50)} ({both:.1f} MiB; Redis in all "
            f"{mem['used_memory_mb']:.1f} MiB)."
        )
    if res.chain.samples:
        lines.append(
            f"- Celery chain overhead per tick (N=10, 0 ms) ≤ 100 ms median: "
            f"{_check(res.chain.median() <= 0.1)} ({res.chain.median() * 1000:.1f} ms for the "
            "whole tick, an upper bound on the chain's own cost)."
        )


# --- the real kube-apiserver scale point ------------------------------------------------------

REAL_HEADING = "## Real kube-apiserver scale point"
MIN_FOR_PERCENTILES = 10
REAL_KINDS = ("first", "converged", "flip to eco", "flip to performance")
REAL_KIND_TITLES = {
    "first": "first tick (every profile created, every node labelled)",
    "converged": "converged tick (nothing to write)",
    "flip to eco": "full flip to eco",
    "flip to performance": "full flip back to performance",
}


def real_section(text: str) -> str | None:
    """The real-server section of a report (heading to the next ``## `` heading)."""
    start = text.find(REAL_HEADING + "\n")
    if start < 0:
        return None
    end = text.find("\n## ", start + len(REAL_HEADING))
    return text[start : end + 1 if end >= 0 else len(text)].rstrip("\n") + "\n"


def _keep_watch_section(out: Path, text: str) -> str:
    """Keep bench/watch.py's section (between its markers, and the notes after it)."""
    from bench.watch import BEGIN

    old = out.read_text() if out.exists() else ""
    if BEGIN not in old or BEGIN in text:
        return text
    return text.rstrip("\n") + "\n\n" + BEGIN + old.split(BEGIN, 1)[1]


def splice_real_section(text: str, section: str) -> str:
    """``text`` with its real-server section replaced by ``section`` (or inserted
    before the targets, else at the end)."""
    old = real_section(text)
    if old is not None:
        return text.replace(old, section.rstrip("\n") + "\n", 1)
    at = text.find("\n## Targets\n")
    if at < 0:
        return text.rstrip("\n") + "\n\n" + section
    return text[: at + 1] + section.rstrip("\n") + "\n\n" + text[at + 1 :]


def _binary_version(path: Path) -> str:
    out = subprocess.run(
        [str(path), "--version"], capture_output=True, text=True, check=False, timeout=30
    )
    return (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else "?"


def _fmt_ms(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"


def _real_tick_row(point: realserver.Point, kind: str) -> str | None:
    ticks = point.of(kind)
    if not ticks:
        return None
    cell = Cell(
        [
            Sample(
                wall_s=t.wall_s,
                requests=t.window.requests,
                writes=t.writes,
                write_phase_s=t.write_phase_s,
                events=t.window.events,
            )
            for t in ticks
        ]
    )
    many = f" (median of {len(ticks)})" if len(ticks) > 1 else ""
    errors = sum((t.window.errors for t in ticks), Counter[str]())
    err = (
        f"; non-2xx: {', '.join(f'{k} x{v}' for k, v in sorted(errors.items()))}" if errors else ""
    )
    phase = cell.median("write_phase_s")
    names = sorted({n for t in ticks for n in t.window.cpu_s}, key=lambda n: n == "workers")
    cpu = ", ".join(
        f"{n} {statistics.median(t.window.cpu_s.get(n, 0.0) for t in ticks):.1f}" for n in names
    )
    return (
        f"| {REAL_KIND_TITLES[kind]}{many} | {point.server} | {fmt_s(cell.median())} | "
        f"{fmt_s(phase) if phase else '-'} | {fmt_req(cell.requests())}{err} | "
        f"{int(cell.median('events')):,} | {int(cell.median('writes')):,} | {cpu} |"
    )


def render_real(
    points: list[realserver.Point],
    *,
    command: str,
    started: float,
    loads: list[str],
    assets: Path,
    workers: int,
    flip_pairs: int,
) -> str:
    lines: list[str] = []
    add = lines.append
    real = next((p for p in points if p.bounds), None)
    emu = next((p for p in points if not p.bounds), None)
    size = points[0]
    add(REAL_HEADING)
    add("")
    add(
        f"Generated by `{command}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))} in "
        f"{(time.time() - started) / 60:.1f} min (cluster loads included). Machine:"
    )
    add("")
    lines += machine()
    add(f"- load average at start / end: {loads[0]} / {loads[-1]}")
    add(
        f"- `{_binary_version(assets / 'kube-apiserver')}`, "
        f"`{_binary_version(assets / 'etcd')}` (KUBEBUILDER_ASSETS)"
    )
    add("")
    add(
        f"One generated cluster — {size.nodes:,} managed nodes (6 % reserved, 5 % "
        f"unschedulable: {size.ticks[0].nodes:,} eligible), {size.pods:,} pods (10 % "
        "pending, 5 % Succeeded/Failed, no performance-only pods: the flip scenario's "
        "cluster) — on two API servers in turn, never both running at once. The "
        f"operator runs as it does for real: {workers} Celery worker processes "
        "(`--pool=prefork --concurrency=1`) and redis-server, each tick sent through "
        "the broker as beat sends it; default WRITE_BATCH_SIZE=100, WRITE_CONCURRENCY=8; "
        f"STATIC_HP_FRAC 1, then {', '.join(['0', '1'] * flip_pairs)} (workers restarted "
        "with the new value between "
        "ticks, unmeasured). Time = the tick summary's `duration_s`; Node events are "
        "sent by their own tasks after a tick and are counted apart. CPU seconds: used "
        "by the API server's processes and by the workers (main and pool processes) "
        "from tick start until the broker is idle again (`/proc/<pid>/stat`)."
    )
    add("")
    add(
        "- **emulator**: `python -m joulie_testbed.emulator`, 0 ms latency, loaded through "
        "its test controls; requests counted by the emulator."
    )
    if real is not None:
        add(
            f"- **{real.server}**: etcd + kube-apiserver started by "
            "`joulie_testbed/controlplane.py` (the envtest tier's control plane: RBAC "
            "authorizer, token authentication, an audit log of every request at Metadata "
            "level in blocking mode, etcd with `--unsafe-no-fsync`; no controller-manager, "
            "scheduler or kubelet, so the server sees our requests and its own only). "
            "The CRD, ServiceAccount, ClusterRole and binding applied from `deploy/`; the "
            "workers authenticate as `system:serviceaccount:joulie-system:joulie-tasks` "
            "with a TokenRequest token. The cluster created through the API as users' "
            f"clusters have it ({real.load.requests:,} requests from 8 client threads "
            f"in {real.load.seconds:.0f} s: nodes with their status, pods bound "
            "through `spec.nodeName` at creation, then each non-pending pod's phase "
            "through `PATCH pods/<name>/status`). Requests counted by the server itself: "
            "`apiserver_request_total` (verb, resource, code) from `/metrics`, read "
            "before the tick and after the broker went idle again."
        )
    add("")
    add(
        "| tick | server | joulie-tasks | write phase | requests (counted by the server) "
        "| + Node events | writes | CPU seconds used |"
    )
    add("|---|---|---|---|---|---|---|---|")
    for kind in REAL_KINDS:
        for point in (emu, real):
            if point is not None and (row := _real_tick_row(point, kind)):
                add(row)
    add("")
    if real is not None:
        _real_latency(real, lines)
    notes = Path(__file__).parent / "realserver_notes.md"
    if notes.exists():
        lines.append(notes.read_text().rstrip("\n"))
        add("")
    return "\n".join(lines) + "\n"


def _real_latency(real: realserver.Point, lines: list[str]) -> None:
    add = lines.append
    add(f"### The server's own request latency ({real.server})")
    add("")
    add(
        "From the server's `apiserver_request_duration_seconds` histogram, diffed "
        "around the same windows (the converged ticks pooled), per verb and resource of "
        "the operator's requests. Percentiles are Prometheus' `histogram_quantile` "
        "estimate (linear inside a bucket; this build's bucket bounds: "
        + ", ".join(f"{b * 1000:g}" for b in real.bounds[:8])
        + " … ms), so a p50 inside the first bucket (0 to 5 ms) is an interpolation; the "
        f"mean is exact (`_sum` / `_count`). Percentiles of fewer than {MIN_FOR_PERCENTILES} "
        "requests are not shown."
    )
    add("")
    add("| tick | request | n | mean | p50 | p90 | p99 |")
    add("|---|---|---|---|---|---|---|")
    order = {"LIST": 0, "GET": 1, "PATCH": 2, "PUT": 3, "POST": 4}
    for kind in REAL_KINDS:
        lat = real.latency(kind)
        for key in sorted(lat, key=lambda k: (order.get(k.split()[0], 9), k)):
            v = lat[key]
            few = v.count < MIN_FOR_PERCENTILES
            p50, p90, p99 = ("-", "-", "-") if few else map(_fmt_ms, (v.p50_s, v.p90_s, v.p99_s))
            add(
                f"| {REAL_KIND_TITLES[kind].split(' (')[0]} | {key} | {v.count:,} | "
                f"{_fmt_ms(v.mean_s)} | {p50} | {p90} | {p99} |"
            )
    add("")
    audited = [(t.kind, t.window.audited, t.window) for t in real.ticks]
    agree = all(
        a == sum(w.requests.values()) + w.events + sum(w.errors.values())
        for _, a, w in audited
        if a is not None
    )
    other: Counter[str] = sum((t.window.other for t in real.ticks), Counter[str]())
    add(
        "Cross-check: the server's audit log attributes to the operator's ServiceAccount "
        + (
            "exactly the requests (and events) counted above, in every window."
            if agree
            else "different counts: "
            + "; ".join(
                f"{k}: audit {a}, metrics "
                f"{sum(w.requests.values()) + w.events + sum(w.errors.values())}"
                for k, a, w in audited
            )
            + "."
        )
        + " The server's own traffic in the same windows (excluded above): "
        + (", ".join(f"{k} {v}" for k, v in sorted(other.items())) if other else "none")
        + "."
    )
    add("")


def real_server_main(args: argparse.Namespace, command: str) -> int:
    from joulie_testbed.controlplane import HOW_TO_GET_ASSETS, find_assets

    assets = find_assets()
    if assets is None:
        print(f"KUBEBUILDER_ASSETS: {HOW_TO_GET_ASSETS}", file=sys.stderr)
        return 2
    started = time.time()
    loads = [" ".join(f"{x:.2f}" for x in os.getloadavg())]
    points = realserver.measure(
        Path(args.workdir),
        assets,
        nodes=args.real_nodes,
        workers=args.real_workers,
        converged=args.real_converged,
        flip_pairs=args.real_flips,
        log=log,
    )
    loads.append(" ".join(f"{x:.2f}" for x in os.getloadavg()))
    section = render_real(
        points,
        command=command,
        started=started,
        loads=loads,
        assets=assets,
        workers=args.real_workers,
        flip_pairs=args.real_flips,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(splice_real_section(out.read_text() if out.exists() else "", section))
    if args.json:
        Path(args.json).write_text(json.dumps([p.to_json() for p in points], indent=1))
    print(section)
    log(f"real-server section written to {out}")
    return 0


def output_api_main(args: argparse.Namespace, command: str) -> int:
    try:
        modes = nodetwin.parse_modes(args.output_api)
    except ValueError as e:
        print(f"--output-api: {e}", file=sys.stderr)
        return 2
    text = nodetwin.run(
        modes=modes,
        n=args.nodes,
        workdir=Path(args.workdir),
        out=Path(args.out),
        command=command,
        log=log,
    )
    print(text)
    log(f"output-mode section written to {args.out}")
    return 0


def first_tick_main(args: argparse.Namespace, command: str) -> int:
    text, res = firsttick.run(
        n=args.first_nodes,
        latency_ms=args.first_latency,
        workers=args.first_workers,
        repeats=args.first_repeats,
        static_hp_frac=args.first_hp_frac,
        output_api=args.first_output_api,
        write_concurrency=args.first_write_concurrency,
        workdir=Path(args.workdir),
        out=Path(args.out),
        command=command,
        log=log,
    )
    if args.json:
        Path(args.json).write_text(json.dumps(res.to_json(), indent=1))
    print(text)
    log(f"first-tick section written to {args.out}")
    return 0


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="N = 100, 1,000; few repeats (~4 min)")
    p.add_argument("--sizes", help="comma-separated node counts (default 100,1000,5000,10000)")
    p.add_argument("--latencies", help="comma-separated emulator latencies in ms (default 0,2)")
    p.add_argument("--repeats", type=int, help="steady ticks per cell (default 5; quick 3)")
    p.add_argument("--out", default=str(REPO / "docs" / "BENCHMARKS.md"), help="report path")
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--workdir", default="/tmp/joulie-bench", help="logs, kubeconfig, redis dir")
    real = p.add_argument_group("real kube-apiserver scale point")
    real.add_argument(
        "--real-server",
        action="store_true",
        help="only the real-server scale point (needs KUBEBUILDER_ASSETS); rewrites its "
        "section of --out",
    )
    real.add_argument("--real-nodes", type=int, default=1000, help="nodes (10 pods each)")
    real.add_argument("--real-workers", type=int, default=2, help="Celery worker processes")
    real.add_argument("--real-converged", type=int, default=3, help="converged ticks measured")
    real.add_argument("--real-flips", type=int, default=2, help="flip pairs (eco, back)")
    modes = p.add_argument_group("output modes (issue 18)")
    modes.add_argument(
        "--output-api",
        metavar="MODES",
        help="only the output-mode benchmark, for these comma-separated OUTPUT_API modes "
        "(nodepowerprofile,nodetwin,both); rewrites its section of --out",
    )
    modes.add_argument("--nodes", type=int, default=1000, help="nodes (10 pods each)")
    first = p.add_argument_group("all-writes first tick (issue 20)")
    first.add_argument(
        "--first-tick",
        action="store_true",
        help="only the all-writes first tick against the reference's; rewrites its section",
    )
    first.add_argument("--first-nodes", type=int, default=2000, help="nodes (10 pods each)")
    first.add_argument("--first-latency", type=float, default=2.0, help="emulator latency, ms")
    first.add_argument("--first-workers", type=int, default=2, help="Celery worker processes")
    first.add_argument("--first-repeats", type=int, default=3, help="runs of each side")
    first.add_argument("--first-hp-frac", type=float, default=0.5, help="STATIC_HP_FRAC")
    first.add_argument(
        "--first-output-api", default="both", help="OUTPUT_API of the workers (default both)"
    )
    first.add_argument(
        "--first-write-concurrency", type=int, help="WRITE_CONCURRENCY (default: the setting's)"
    )
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    sizes = (
        [int(x) for x in args.sizes.split(",")]
        if args.sizes
        else ([100, 1000] if args.quick else [100, 1000, 5000, 10000])
    )
    latencies = [float(x) for x in args.latencies.split(",")] if args.latencies else list(LATENCIES)
    return Plan(
        sizes=sizes,
        latencies=latencies,
        steady_repeats=args.repeats or (3 if args.quick else 5),
        ref_repeats=1 if args.quick else 2,
        flip_pairs=1,
        flip_latencies=[max(latencies)] if args.quick else latencies,
        scaling_flips=1 if args.quick else 2,
        scaling_size=5000 if 5000 in sizes else max(sizes),
        chain_repeats=10,
        quick=args.quick,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = ".venv/bin/python -m bench.run" + (
        " " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        if (argv if argv is not None else sys.argv[1:])
        else ""
    )
    if args.real_server:
        return real_server_main(args, command)
    if args.output_api:
        return output_api_main(args, command)
    if args.first_tick:
        return first_tick_main(args, command)
    plan = make_plan(args)
    started = time.time()
    loads = [" ".join(f"{x:.2f}" for x in os.getloadavg())]
    res = Results()
    bench = Bench(Path(args.workdir), log=log)
    try:
        chain_overhead(bench, res, plan)
        for n in plan.sizes:
            log(f"N={n}: steady and guard-heavy")
            steady_and_guard(bench, res, plan, n)
            log(f"N={n}: flips")
            flips(bench, res, plan, n)
            if n in bench.peak_rss_mb:
                res.rss[n] = bench.peak_rss_mb[n]
    finally:
        bench.close()
    loads.append(" ".join(f"{x:.2f}" for x in os.getloadavg()))
    text = report(res, plan, command=command, started=started, loads=loads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = real_section(out.read_text()) if out.exists() else None
    if kept:
        text = splice_real_section(text, kept)
    text = _keep_watch_section(out, text)
    out.write_text(text)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "cells": {k: c.to_json() for k, c in res.cells.items()},
                    "memory": res.memory,
                    "rss_mb": res.rss,
                    "eligible": res.eligible,
                    "chain": res.chain.to_json(),
                    "inline_s": res.inline,
                },
                indent=1,
            )
        )
    print(text)
    log(f"report written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
