"""``python -m bench.run --output-api MODES``: the API cost of each OUTPUT_API mode.

    .venv/bin/python -m bench.run --output-api nodepowerprofile,nodetwin,both
    .venv/bin/python -m bench.run --output-api nodetwin --nodes 200 --out /tmp/nt.md

Processes as in bench/run.py (redis-server, the API emulator in its own process, one
Celery worker, this client) plus, for the cache-fed rows, the watcher (``joulie-tasks
watch``). Per mode, on a freshly seeded cluster (N managed nodes, 10 pods each, no
performance-only pod, so every planned downgrade goes through):

- first tick (every managed node new: labels, then a profile and/or a twin created);
- steady tick, list-fed: converged, nothing written;
- full flip (STATIC_HP_FRAC 1 → 0, then 0 → 1): every managed node's labels and its
  profile and/or twin rewritten; requests per changed node = write requests / nodes;
- steady tick, cache-fed (the watcher running, its cache synced and caught up with
  our writes): no request at all in every mode (NodeTwins are watched too);
- status refresh (twin modes): every twin's ``lastUpdated`` set 151 s back, as if
  STATUS_REFRESH_S had passed, then a cache-fed tick: one status patch per twin.

Requests are the emulator's counters (watch streams left out), reset before a tick and
read once the broker is idle again; the wall time is the tick's own ``duration_s``.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import write_marked
from bench.scenarios import NO_PERF_MIX, Bench, Sample
from bench.watch import Watcher
from joulie_tasks.adapters import clients, store
from joulie_tasks.core import models, twin
from joulie_testbed.procs import wait_for

BEGIN = "<!-- nodetwin-bench:begin -->"
END = "<!-- nodetwin-bench:end -->"
MODES = tuple(m.value for m in models.OutputApi)
#: How far back the refresh row sets each twin's lastUpdated (just past the period).
AGED_S = twin.STATUS_REFRESH_S + 1


@dataclass
class ModeResult:
    """What one OUTPUT_API mode cost, tick by tick."""

    mode: str
    nodes: int = 0
    first: Sample | None = None
    steady_list: Sample | None = None
    flips: list[Sample] = field(default_factory=list)
    steady_cache: Sample | None = None
    refresh: Sample | None = None

    def per_changed_node(self) -> float:
        """Write requests per node in a full flip (the median flip)."""
        rates = sorted(s.writes / s.nodes for s in self.flips if s.nodes)
        return rates[len(rates) // 2] if rates else float("nan")


def measure_mode(bench: Bench, mode: str, *, n: int, log: Callable[[str], None]) -> ModeResult:
    """Seed, converge at STATIC_HP_FRAC=1, flip twice, then the cache-fed rows."""
    result = ModeResult(mode)
    bench.seed(n, NO_PERF_MIX, seed=n + 1)
    with bench.workers(1, output_api=mode, static_hp_frac=1):
        result.first = bench.our_tick()
        result.nodes = result.first.nodes
        bench.converge()
        result.steady_list = bench.our_tick()
    for frac, direction in ((0, "eco"), (1, "performance")):
        with bench.workers(1, output_api=mode, static_hp_frac=frac):
            sample = bench.our_tick()
        sample.direction = direction
        result.flips.append(sample)
        log(f"{mode}: flip to {direction}: {sample.writes} writes, {sample.wall_s:.2f}s")
    env = {**bench.base_env, "OUTPUT_API": mode, "STATIC_HP_FRAC": "1"}
    watcher = Watcher(bench, env, name=f"watch-{mode}")
    try:
        watcher.wait_synced()
        with bench.workers(1, output_api=mode, static_hp_frac=1):
            _await_cache(bench, watcher.state, twins=mode != "nodepowerprofile")
            result.steady_cache = bench.our_tick()
            if models.OutputApi(mode).writes_twins:
                _age_twins(bench)
                _await_cache(bench, watcher.state, twins=True)
                result.refresh = bench.our_tick()
    finally:
        watcher.stop()
    log(f"{mode}: {result.per_changed_node():.2f} write requests per changed node")
    return result


def _await_cache(bench: Bench, state: store.RedisStore, *, twins: bool) -> None:
    """Until the cache holds the cluster's twins at their current resourceVersions (our
    own writes and the aging came back as watch events)."""
    if not twins:
        return
    cs = clients.cache(state)

    def caught_up() -> bool:
        view = cs.read(tick_time=time.time(), now=time.time(), max_age=5.0, twins=True)
        if isinstance(view, str) or not view.twins_cached:
            return False
        cached = {t.name: t.resource_version for t in view.snapshot.twins}
        listed = {
            o["metadata"]["name"]: o["metadata"]["resourceVersion"]
            for o in bench.remote.list_objects("nodetwins")
        }
        return cached == listed

    wait_for(caught_up, timeout=300, interval=0.5, what="the cache caught up with the twins")


def _age_twins(bench: Bench) -> None:
    """Every twin's status stamped AGED_S ago, out of band (the emulator's store)."""
    stamp = twin.rfc3339(time.time() - AGED_S)
    for obj in bench.remote.list_objects("nodetwins"):
        obj.setdefault("status", {})["lastUpdated"] = stamp
        obj["metadata"].pop("resourceVersion", None)
        bench.remote.put_object(obj)


# --- report ---------------------------------------------------------------------------------


def _requests(sample: Sample | None) -> str:
    """``total = lists + each write kind``: e.g. ``182 = 4 lists + 89 patch nodes + …``."""
    if sample is None:
        return "—"
    lists = sum(n for k, n in sample.requests.items() if k.startswith("list "))
    writes = sorted(k for k, n in sample.requests.items() if n and not k.startswith("list "))
    parts = ([f"{lists} lists"] if lists else []) + [f"{sample.requests[k]} {k}" for k in writes]
    return f"{sample.total} = " + " + ".join(parts) if parts else "0"


def _wall(sample: Sample | None) -> str:
    return "—" if sample is None else f"{sample.wall_s:.2f} s"


def render(results: Sequence[ModeResult], *, n: int, command: str, machine: str) -> str:
    rows: list[tuple[str, Callable[[ModeResult], Sample | None]]] = [
        ("first tick (every node new)", lambda r: r.first),
        ("steady, list-fed", lambda r: r.steady_list),
        ("full flip to eco", lambda r: r.flips[0] if r.flips else None),
        ("full flip to performance", lambda r: r.flips[1] if len(r.flips) > 1 else None),
        ("steady, cache-fed (watcher)", lambda r: r.steady_cache),
        ("status refresh (cache-fed)", lambda r: r.refresh),
    ]
    head = "| tick | " + " | ".join(f"`{r.mode}`" for r in results) + " |"
    lines = [
        BEGIN,
        "## Output modes: NodePowerProfile, NodeTwin, both (issue 18)",
        "",
        f"Command: `{command}`. {machine}",
        "",
        f"N = {n} nodes seeded, {results[0].nodes if results else 0} managed (6 % reserved, "
        "5 % unschedulable), 10 pods each, no performance-only pod; one worker; emulator "
        "latency 0. Requests counted by the emulator (watch streams left out).",
        "",
        "Write requests per changed node in a full flip (labels, then the profile "
        "replaced and/or the twin replaced and its status patched):",
        "",
        "| | " + " | ".join(f"`{r.mode}`" for r in results) + " |",
        "|---|" + "---|" * len(results),
        "| per changed node | " + " | ".join(f"{r.per_changed_node():.2f}" for r in results) + " |",
        "",
        "Requests per tick (total = paged list requests, LIST_PAGE_SIZE objects a page, "
        "+ each kind of write) and the tick's wall time (one run on a shared machine: "
        "indicative only, the request counts are exact):",
        "",
        head,
        "|---|" + "---|" * len(results),
    ]
    for title, pick in rows:
        cells = [f"{_requests(pick(r))}; {_wall(pick(r))}" for r in results]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "A list-fed tick in a twin mode also lists the NodeTwins and the NodeHardware (one "
        "paged list each). A converged cache-fed tick makes no request in any mode: the "
        "watcher keeps both in the cache too when OUTPUT_API writes twins (docs/SPEC.md "
        "§13.7, §13.10). "
        f"An unchanged twin costs one status patch every {twin.STATUS_REFRESH_S:.0f} s "
        "(the extender ignores twins older than 5 minutes), so a converged cluster of M "
        f"managed nodes in a twin mode sends M status patches per {twin.STATUS_REFRESH_S:.0f}"
        " s and nothing else.",
        END,
    ]
    return "\n".join(lines) + "\n"


def run(
    *, modes: Sequence[str], n: int, workdir: Path, out: Path | None, command: str,
    log: Callable[[str], None],
) -> str:  # fmt: skip
    """Measure every mode and write the section between its markers into ``out``."""
    bench = Bench(workdir, log=log)
    results: list[ModeResult] = []
    try:
        for mode in modes:
            log(f"{mode}: N={n}")
            results.append(measure_mode(bench, mode, n=n, log=log))
    finally:
        bench.close()
    load = os.getloadavg()
    machine = (
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {load[0]:.2f} at the end."
    )
    text = render(results, n=n, command=command, machine=machine)
    if out is not None:
        write_marked(out, text, begin=BEGIN, end=END)
    return text


def parse_modes(text: str) -> list[str]:
    """``nodetwin,both`` → the modes, each a valid OUTPUT_API; ValueError otherwise."""
    modes = [m.strip().lower() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"{text!r}: expected a comma-separated list of {', '.join(MODES)}")
    return modes
