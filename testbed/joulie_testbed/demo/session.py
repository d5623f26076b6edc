"""One demo run: start everything, watch the ticks, stop everything, report.

Why a class: the clean-up must know exactly what was started, whatever the point
of failure or interruption, so each resource is recorded on the session the
moment it exists (under ``children.Critical``) and ``stop`` undoes only those,
in reverse dependency order: beat (no new ticks), worker, redis-server, emulator.

The loop polls ``tick_summaries()`` for a finished tick (never sleeping a fixed
time for a tick), shows it from the FSM records, the tick's transitions and the
emulator's NodePowerProfiles (or NodeTwins, with ``--output-api nodetwin``), then moves
the workload one step for the next tick and waits until the watcher's cache holds it: a
tick begun before that (one the watcher kicked on the previous tick's own writes, say)
cannot show the step and is not counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from joulie_tasks import config, errors
from joulie_tasks.adapters import clients, redis_errors
from joulie_tasks.adapters import store as store_mod
from joulie_tasks.core import models
from joulie_tasks.ports import metrics
from joulie_testbed import emulator, procs
from joulie_testbed.demo import chart, children, options, view
from joulie_testbed.demo import workload as demo_workload

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)

POLL_S = 0.05
#: How long a workload step waits for the watcher's cache to hold it.
CACHE_WAIT_S = 10.0
_COUNTERS = {
    metrics.TICKS: "ticks (all results)",
    metrics.KUBE_REQUESTS: "API requests",
    metrics.KUBE_CONFLICTS: "conflicts",
    metrics.KUBE_RETRIES: "retried calls",
    metrics.WRITE_FAILURES: "failed writes",
}


class Session:
    """Everything one ``joulie-tasks demo`` run started, and what it saw."""

    def __init__(
        self,
        *,
        opts: options.Options,
        operator: config.Settings,
        fallback_redis_url: str,
        env: Mapping[str, str],
        workdir: Path,
        style: view.Style,
    ) -> None:
        self.opts = opts
        self.operator = operator
        self.fallback_redis_url = fallback_redis_url
        self.env = dict(env)
        self.workdir = workdir
        self.style = style
        self.emulator: emulator.Emulator | None = None
        self.redis: procs.RedisServer | None = None
        self.children: list[procs.Proc] = []
        self.state: store_mod.RedisStore | None = None
        self.workload: demo_workload.Workload | None = None
        self.totals = view.Totals()
        self.samples: list[tuple[int, int, int]] = []  # (performance, draining, demand)
        self.counters: dict[str, float] | None = None
        self.states: dict[str, str] = {}

    # --- start ---------------------------------------------------------------------------

    def start(self) -> None:
        print(options.describe(self.opts, self.env), flush=True)
        url = self._redis_url()
        self.env["REDIS_URL"] = url
        self.state = store_mod.RedisStore(url)
        with children.Critical():
            self.emulator = emulator.Emulator().start()
        kubeconfig = self.emulator.write_kubeconfig(self.workdir / "kubeconfig")
        self.env["KUBECONFIG"] = str(kubeconfig)
        print(f"demo: API emulator at {self.emulator.url} (kubeconfig {kubeconfig})", flush=True)
        self.workload = demo_workload.Workload(
            emulator=self.emulator,
            managed=self.opts.nodes,
            steps=self.opts.ticks,
            per_node=self.opts.queue_perf_per_hp_node,
            seed=self.opts.seed,
            profile_label=self.operator.power_profile_label,
            reserved_label=self.operator.reserved_label_key,
        )
        self.workload.create_cluster()
        self.workload.step(0)
        kinds = ("worker", "beat", "watch") if self.opts.watch else ("worker", "beat")
        for kind in kinds:
            with children.Critical():
                child = procs.start_operator(
                    kind,
                    env=self.env,
                    log=self.workdir / f"{kind}.log",
                    node_name="demo",
                    concurrency=2,
                    log_level=self.opts.log_level,
                )
                self.children.append(child)
            print(f"demo: started {kind} pid {child.pid}", flush=True)
            child.wait_for_log(procs.READY_TEXT[kind], timeout=options.READY_TIMEOUT_S)
        watcher = (
            "; the watcher feeds the cache and kicks a tick when demand changes"
            if self.opts.watch
            else ""
        )
        print(
            f"demo: worker and beat ready; a tick every {self.env['RECONCILE_INTERVAL']}"
            f"{watcher} (Ctrl-C stops cleanly)",
            flush=True,
        )

    def _redis_url(self) -> str:
        if self.opts.redis_url is not None:
            return self._shared_redis(self.opts.redis_url, why=None)
        try:
            with children.Critical():
                self.redis = procs.RedisServer(self.workdir / "redis").spawn(env=self.env)
        except procs.RedisMissing as e:
            return self._shared_redis(self.fallback_redis_url, why=str(e))
        url = self.redis.url
        print(f"demo: started redis-server pid {self.redis.pid} ({url})", flush=True)
        self.redis.await_ready()
        return url

    def _shared_redis(self, url: str, *, why: str | None) -> str:
        problem = children.check_shared_redis(url)
        shown = redis_errors.redact_url(url)
        if problem is not None:
            prefix = f"{why}, and REDIS_URL cannot be used: " if why else ""
            raise children.DemoError(prefix + redis_errors.redact_url(problem))
        print(f"demo: using the empty Redis at {shown} (its keys stay afterwards)", flush=True)
        return url

    # --- watch ---------------------------------------------------------------------------

    def watch(self) -> None:
        """Show each finished tick until ``--ticks`` were seen; step the workload between."""
        state, workload, _ = self._started()
        seen = {t.tick_id for t in state.tick_summaries()}
        budget = 2 * self.operator.reconcile_interval + 30
        deadline = time.monotonic() + budget
        stepped_at = 0.0  # when the cache held the workload's last step
        while self.totals.ticks < self.opts.ticks:
            fresh = [t for t in reversed(state.tick_summaries()) if t.tick_id not in seen]
            if not fresh:
                for child in self.children:
                    child.check()
                if time.monotonic() > deadline:
                    raise children.DemoError(
                        f"no tick finished within {budget:.0f}s; see {self.workdir}/worker.log"
                    )
                time.sleep(POLL_S)
                continue
            for tick in fresh:
                seen.add(tick.tick_id)
                if self.totals.ticks >= self.opts.ticks:
                    break
                if tick.tick_time < stepped_at:
                    # Begun before the last step was in the cache (a kick on the previous
                    # tick's own writes, say): it cannot show that step. Not counted.
                    continue
                self._show(tick)
                if self.totals.ticks < self.opts.ticks:
                    workload.step(self.totals.ticks)
                    self._await_cache(workload)
                    stepped_at = time.time()
            deadline = time.monotonic() + budget

    def _await_cache(self, workload: demo_workload.Workload) -> None:
        """Until the watcher's cache holds the performance pods of the step just made, or
        is one the ticks do not use (they list then); at most CACHE_WAIT_S."""
        state, _, _ = self._started()
        cache = clients.cache(state)
        want = workload.pods_by_node()

        def caught_up() -> bool:
            now = time.time()
            seen = cache.read(tick_time=now, now=now, max_age=self.operator.cache_max_age)
            if isinstance(seen, str):
                return True  # not synced or stale: ticks list the cluster as it is
            demand = seen.demand
            return (
                demand.performance_pods == workload.performance_pods
                and dict(demand.performance_pods_by_node) == want
            )

        try:
            procs.wait_for(caught_up, timeout=CACHE_WAIT_S, interval=POLL_S, what="the cache")
        except procs.WaitTimeout:
            logger.warning("the watcher's cache did not catch up with the workload step")

    def _show(self, tick: models.TickSummary) -> None:
        state, workload, emu = self._started()
        tick_id = tick.tick_id
        fsm = state.fsm()
        transitions = [t for t in state.transitions() if t.tick_id == tick_id]
        demand = self._model(lambda: state.load_demand(tick_id))
        planned = self._model(lambda: state.load_plan(tick_id))
        in_pct = not models.OutputApi(self.opts.output_api).writes_profiles
        caps = _twin_caps(emu) if in_pct else _profile_caps(emu)
        self.totals.add(tick)
        shown = view.TickView(
            number=self.totals.ticks,
            total=self.opts.ticks,
            tick=tick,
            fsm=fsm,
            caps=caps,
            transitions=transitions,
            excluded={
                workload.reserved: f"{self.operator.reserved_label_key}=true",
                workload.unschedulable: "spec.unschedulable",
            },
            demand=None if demand is None else demand.performance_pods,
            pending=workload.pending,
            hp_count=None if planned is None else planned.hp_count,
            previous=dict(self.states),
            caps_in_pct=in_pct,
        )
        self.states = {node: r.state.value for node, r in fsm.items()}
        print("\n".join(view.tick_lines(shown, self.style)), flush=True)
        states = [r.state.value for r in fsm.values()]
        self.samples.append(
            (
                states.count(models.NodeState.ACTIVE_PERFORMANCE.value),
                states.count(models.NodeState.DRAINING_PERFORMANCE.value),
                shown.demand if shown.demand is not None else 0,
            )
        )

    def _started(self) -> tuple[store_mod.RedisStore, demo_workload.Workload, emulator.Emulator]:
        if self.state is None or self.workload is None or self.emulator is None:
            raise children.DemoError("the demo was not started")
        return self.state, self.workload, self.emulator

    @staticmethod
    def _model(load: Callable[[], ModelT]) -> ModelT | None:
        """A tick part, or None when it is missing (expired, or the tick stopped early)."""
        try:
            return load()
        except errors.StateStoreError:
            return None

    # --- stop and report -----------------------------------------------------------------

    def stop(self) -> None:
        """Stop what was started, newest first; the emulator last (the worker uses it)."""
        for child in reversed(self.children):
            child.stop()
        if self.state is not None:
            try:
                self.counters, _ = self.state.metric_values()
            except errors.StateStoreError:
                self.counters = None
            self.state.close()
        if self.redis is not None:
            self.redis.stop()
        if self.emulator is not None:
            self.emulator.stop()

    def report(self, *, interrupted: bool) -> None:
        """Summary, counters, chart and where the logs are (also after Ctrl-C).

        Nothing when nothing was started (the error line says it all).
        """
        if self.emulator is None and not self.children:
            return
        print("", flush=True)
        line = view.summary_line(self.totals, requested=self.opts.ticks, interrupted=interrupted)
        print(self.style.paint(line, "\033[1m"), flush=True)
        if self.counters is not None:
            print(view.counter_line(self.counters, _COUNTERS), flush=True)
        if self.samples:
            data = chart.ChartData(
                performance_nodes=[s[0] for s in self.samples],
                draining_nodes=[s[1] for s in self.samples],
                demand_pods=[s[2] for s in self.samples],
                managed_nodes=self.opts.nodes,
                pods_per_node=max(1, self.opts.queue_perf_per_hp_node),
                title=f"JOULIE-TASKS DEMO: {self.opts.policy}, {self.opts.nodes} NODES",
            )
            try:
                path = chart.write_chart(self.opts.png, data)
                print(f"chart: {path.resolve()}", flush=True)
            except OSError as e:
                print(f"chart: cannot write {self.opts.png}: {e}", flush=True)
        else:
            print("chart: no tick finished, nothing to draw", flush=True)
        if self.emulator is not None:
            print(_objects_line(self.emulator), flush=True)
        names = [c.log_path.name for c in (*self.children, self.redis) if c is not None]
        print(f"logs: {self.workdir} ({', '.join([*names, 'kubeconfig'])})", flush=True)


def _profile_caps(emu: emulator.Emulator) -> dict[str, float]:
    """Each node's cap in watts, from its NodePowerProfile."""
    caps: dict[str, float] = {}
    for npp in emu.list_objects("nodepowerprofiles"):
        spec = npp.get("spec", {})
        cap = spec.get("cpu", {}).get("packagePowerCapWatts")
        if spec.get("nodeName") and cap is not None:
            caps[spec["nodeName"]] = float(cap)
    return caps


def _twin_caps(emu: emulator.Emulator) -> dict[str, float]:
    """Each node's cap in percent of max, from its NodeTwin as the agent finds it (the
    twin whose spec.nodeName is the node): the CPU cap, else the per-GPU one."""
    caps: dict[str, float] = {}
    for obj in emu.list_objects("nodetwins"):
        spec = obj.get("spec", {})
        cap = spec.get("cpu", {}).get("packagePowerCapPctOfMax")
        if cap is None:
            cap = spec.get("gpu", {}).get("powerCap", {}).get("capPctOfMax")
        if spec.get("nodeName") and cap is not None:
            caps[spec["nodeName"]] = float(cap)
    return caps


def _objects_line(emu: emulator.Emulator) -> str:
    """What the decision was written as, counted in the cluster at the end."""
    profiles = len(emu.list_objects("nodepowerprofiles"))
    twins = len(emu.list_objects("nodetwins"))
    return f"objects: {profiles} NodePowerProfiles, {twins} NodeTwins"
