"""The real-server scale point: one cluster, the same ticks, on kube-apiserver and the emulator.

``python -m bench.run --real-server``. One generated cluster (N
managed nodes, 10 pods each, no performance-only pods, as the flip scenario of
``bench.run``) is put on two API servers in turn, never both running at once:

- the in-package emulator (``python -m joulie_testbed.emulator``, 0 ms latency),
  loaded through its test controls; requests counted by the emulator;
- a real etcd + kube-apiserver (``testbed/joulie_testbed/controlplane.py``, KUBEBUILDER_ASSETS),
  loaded through the API as a user's cluster would have it (bench/kubeapi.py);
  the operator's CRD, ServiceAccount, ClusterRole and binding applied from
  ``deploy/`` and the workers authenticated with a TokenRequest token of that
  ServiceAccount; requests counted by the server (``apiserver_request_total``
  from ``/metrics``, diffed around each tick) with its own latency histogram.

On each: the operator as it runs for real (Celery worker processes + redis-server,
ticks sent through the broker as beat sends them); the first tick (every profile
created, every node labelled), converged ticks (nothing to write), then a full
flip to eco and one back to performance, repeated (STATIC_HP_FRAC 1 → 0 → 1 …,
workers restarted with the new value between ticks, unmeasured).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench.kubeapi import (
    OPERATOR_ACCOUNT,
    OPERATOR_NAMESPACE,
    JsonClient,
    Latency,
    LoadStats,
    Scrape,
    buckets_bounds,
    install_operator,
    latencies,
    load_cluster,
)
from bench.kubeapi import REQUEST_TOTAL as _REQUEST_TOTAL
from bench.scenarios import NO_PERF_MIX
from joulie_testbed.controlplane import ControlPlane
from joulie_testbed.emulator import RemoteEmulator
from joulie_testbed.emulator.seed import Cluster, generate_cluster
from joulie_testbed.procs import EmulatorProc, RedisServer, Workers, cpu_seconds
from joulie_testbed.ticks import TickSender, wait_idle

PODS_PER_NODE = 10
#: What the operator touches; any other resource in a window is the server's own traffic.
OPERATOR_RESOURCES = ("nodes", "pods", "nodepowerprofiles", "events")
EVENTS = "events"
#: apiserver_request_total's verbs, named as the emulator counts them.
VERBS = {
    "LIST": "list",
    "GET": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
    "WATCH": "watch",
}
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}"


@dataclass
class Window:
    """What one server saw during a measured window."""

    requests: Counter[str] = field(default_factory=Counter)  # "verb resource" -> n, 2xx
    events: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # "verb resource code" -> n
    other: Counter[str] = field(default_factory=Counter)  # the server's own traffic
    latency: dict[str, Latency] = field(default_factory=dict)  # "VERB resource"
    scrape: Scrape = field(default_factory=Scrape)  # the server's metrics, diffed
    audited: int | None = None  # requests by the operator's account in the audit log
    cpu_s: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds used


@dataclass
class Tick:
    kind: str
    wall_s: float
    write_phase_s: float
    writes: int
    nodes: int
    window: Window
    applied: int = 0

    def to_json(self) -> dict[str, Any]:
        w = self.window
        return {
            "kind": self.kind,
            "wall_s": self.wall_s,
            "write_phase_s": self.write_phase_s,
            "writes": self.writes,
            "nodes": self.nodes,
            "applied": self.applied,
            "requests": dict(w.requests),
            "events": w.events,
            "errors": dict(w.errors),
            "other": dict(w.other),
            "latency": {k: v.to_json() for k, v in w.latency.items()},
            "audited": w.audited,
            "cpu_s": w.cpu_s,
        }


@dataclass
class Point:
    """One server's run: its cluster load and its ticks."""

    server: str
    nodes: int
    pods: int
    load: LoadStats
    ticks: list[Tick] = field(default_factory=list)
    bounds: list[float] = field(default_factory=list)

    def of(self, kind: str) -> list[Tick]:
        return [t for t in self.ticks if t.kind == kind]

    def latency(self, kind: str) -> dict[str, Latency]:
        """The server's request latency over every tick of ``kind`` together."""
        merged = Scrape()
        for tick in self.of(kind):
            merged = merged.plus(tick.window.scrape)
        return latencies(merged, operator_group)

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "nodes": self.nodes,
            "pods": self.pods,
            "load": vars(self.load),
            "latency_bounds_s": self.bounds,
            "ticks": [t.to_json() for t in self.ticks],
        }


def operator_group(labels: Mapping[str, str]) -> str | None:
    """Latency groups: ``VERB resource`` of the operator's requests, else None."""
    if labels.get("resource") not in OPERATOR_RESOURCES:
        return None
    return f"{labels.get('verb')} {labels.get('resource')}"


class Target(Protocol):
    name: str
    kubeconfig: Path
    bounds: list[float]  # the server's latency histogram bounds (none: no histogram)

    def load(self, cluster: Cluster) -> LoadStats: ...
    def pids(self) -> dict[str, int]: ...
    def begin(self) -> None: ...
    def end(self) -> Window: ...
    def close(self) -> None: ...


class EmulatorTarget:
    """The emulator in its own process, loaded through its test controls."""

    def __init__(self, workdir: Path) -> None:
        self.proc = EmulatorProc(workdir)
        self.remote = RemoteEmulator(self.proc.url, timeout=600)
        self.kubeconfig = self.proc.kubeconfig
        self.name = "emulator"
        self.bounds: list[float] = []

    def load(self, cluster: Cluster) -> LoadStats:
        started = time.monotonic()
        self.remote.reset()
        self.remote.set_latency(0)
        self.remote.load(cluster.nodes, cluster.pods)
        return LoadStats(
            nodes=len(cluster.nodes), pods=len(cluster.pods), seconds=time.monotonic() - started
        )

    def pids(self) -> dict[str, int]:
        return {"emulator": self.proc.pid}

    def begin(self) -> None:
        self.remote.reset_counters()

    def end(self) -> Window:
        window = Window()
        for (verb, resource), n in self.remote.counters().items():
            if resource == EVENTS:
                window.events += n
            else:
                window.requests[f"{verb} {resource}"] += n
        return window

    def close(self) -> None:
        self.proc.stop()


class ApiServerTarget:
    """etcd + kube-apiserver; the operator installed from deploy/ with its own token."""

    def __init__(self, workdir: Path, assets: Path) -> None:
        self.plane = ControlPlane(assets).start()
        try:
            self.admin = JsonClient(
                self.plane.server, ca_file=self.plane.ca_file, token=self.plane.admin_token
            )
            token = install_operator(self.admin)
            self.kubeconfig = self.plane.write_kubeconfig(
                workdir / "operator.kubeconfig", token=token
            )
            version = json.loads(self.plane.get_raw("/version"))
            self.name = f"kube-apiserver {version['gitVersion']}"
        except BaseException:
            self.plane.stop()
            raise
        self._before = Scrape()
        self._audit_mark = 0
        self.bounds = buckets_bounds(self.scrape())

    def load(self, cluster: Cluster) -> LoadStats:
        return load_cluster(self.admin, cluster.nodes, cluster.pods)

    def pids(self) -> dict[str, int]:
        return self.plane.pids()

    def scrape(self) -> Scrape:
        return Scrape.parse(self.plane.get_raw("/metrics", timeout=60).decode())

    def begin(self) -> None:
        self._audit_mark = self.plane.audit_mark()
        self._before = self.scrape()

    def end(self) -> Window:
        diff = self.scrape().minus(self._before)
        window = Window()
        for labels, value in diff.rows(_REQUEST_TOTAL):
            n = int(value)
            resource = labels.get("resource", "")
            verb = VERBS.get(labels.get("verb", ""), labels.get("verb", "").lower())
            sub = f"/{labels['subresource']}" if labels.get("subresource") else ""
            ours = resource in OPERATOR_RESOURCES and not labels.get("system_client")
            if not ours:
                if resource:  # the /metrics reads themselves have no resource
                    window.other[f"{verb} {resource}{sub}"] += n
                continue
            code = labels.get("code", "")
            if not code.startswith("2"):
                window.errors[f"{verb} {resource}{sub} {code}"] += n
            elif resource == EVENTS:
                window.events += n
            else:
                window.requests[f"{verb} {resource}{sub}"] += n

        window.latency = latencies(diff, operator_group)
        window.scrape = diff
        events = self.plane.audit_events(since=self._audit_mark)
        users = [e.get("user", {}).get("username") for e in events]
        window.audited = users.count(OPERATOR_USER)
        return window

    def close(self) -> None:
        self.admin.close()
        self.plane.stop()


# --- the run ----------------------------------------------------------------------------


def cluster_for(nodes: int) -> Cluster:
    """The flip scenario's cluster (bench.scenarios.Bench.seed with NO_PERF_MIX)."""
    return generate_cluster(
        nodes,
        PODS_PER_NODE,
        seed=nodes + 1,
        reserved=nodes * 6 // 100,
        unschedulable=nodes * 5 // 100,
        pending_fraction=0.1,
        terminal_fraction=0.05,
        mix=dict(NO_PERF_MIX),
    )


class Runner:
    """Redis and the tick sender, shared by both targets (flushed between them)."""

    def __init__(self, workdir: Path, *, workers: int, log: Callable[[str], None]) -> None:
        self.workdir = workdir
        self.log = log
        self.workers_count = workers
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(workdir / "redis").start()
        self.ticks = TickSender(self.redis.url)
        self.rc = self.redis.client()

    def close(self) -> None:
        self.ticks.close()
        self.rc.close()
        self.redis.stop()

    @contextlib.contextmanager
    def workers(self, target: Target, **settings: object) -> Iterator[Workers]:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("JOULIE", "CELERY"))},
            "REDIS_URL": self.redis.url,
            "KUBECONFIG": str(target.kubeconfig),
            "RECONCILE_INTERVAL": "1h",  # only the bench's ticks run
            "PYTHONUNBUFFERED": "1",
            **{k.upper(): str(v) for k, v in settings.items()},
        }
        tag = f"real-{target.name.split()[0]}-{int(time.time() * 1000) % 10**8}"
        ws = Workers(self.workers_count, env=env, workdir=self.workdir / "logs", tag=tag)
        try:
            # Real workers are long-lived: give fresh ones their clients before a tick
            # (an empty joulie.send_events builds both and writes nothing).
            for _ in range(3 * self.workers_count):
                self.ticks.app.send_task("joulie.send_events", args=([],))
            wait_idle(self.rc, timeout=120)
            yield ws
        finally:
            ws.stop()

    def settle(self, *, quiet_s: float = 0.25, timeout: float = 900) -> None:
        """Wait until the broker stays idle for ``quiet_s``. One idle reading is not
        enough: a message a worker has just popped is neither in the queue nor yet in
        the unacked hash, and a busy 2-core machine can hold a process in that gap."""
        deadline = time.monotonic() + timeout
        while True:
            wait_idle(self.rc, timeout=max(1.0, deadline - time.monotonic()))
            quiet_until = time.monotonic() + quiet_s
            while time.monotonic() < quiet_until:
                time.sleep(0.02)
                if int(self.rc.llen("celery")) or int(self.rc.hlen("unacked")):
                    break
            else:
                return

    def tick(self, target: Target, kind: str, workers: Workers) -> Tick:
        wait_idle(self.rc, timeout=900)
        target.begin()
        pids = {**target.pids(), "workers": 0}
        worker_pids = [p.pid for p in workers.procs] + workers.pool_pids()
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items() if pid}
        cpu0["workers"] = sum(cpu_seconds(pid) for pid in worker_pids)
        summary = self.ticks.run(timeout=900)
        self.settle()  # Node events go out after the tick
        cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items() if pid}
        cpu["workers"] = sum(cpu_seconds(pid) for pid in worker_pids) - cpu0["workers"]
        window = target.end()
        window.cpu_s = cpu
        tick = Tick(
            kind=kind,
            wall_s=float(summary["duration_s"]),
            write_phase_s=float(summary.get("write_phase_s") or 0.0),
            writes=int(summary["written"]),
            nodes=int(summary["nodes"]),
            window=window,
            applied=int(summary.get("applied") or 0),
        )
        total = sum(window.requests.values())
        self.log(
            f"{target.name}: {kind}: {tick.wall_s:.2f}s, {total} requests "
            f"(+{window.events} events), {tick.writes} writes"
        )
        return tick

    def run(self, target: Target, cluster: Cluster, *, converged: int, flip_pairs: int) -> Point:
        self.log(f"{target.name}: loading {len(cluster.nodes)} nodes, {len(cluster.pods)} pods")
        stats = target.load(cluster)
        self.log(f"{target.name}: loaded in {stats.seconds:.1f}s")
        point = Point(target.name, len(cluster.nodes), len(cluster.pods), stats, [], target.bounds)
        self.rc.flushdb()
        with self.workers(target, static_hp_frac=1) as ws:
            point.ticks.append(self.tick(target, "first", ws))
            while point.ticks[-1].writes and len(point.ticks) < 4:
                point.ticks.append(self.tick(target, "converging", ws))
            if point.ticks[-1].writes:
                raise RuntimeError(f"{target.name}: did not converge in 4 ticks")
            for _ in range(converged):
                point.ticks.append(self.tick(target, "converged", ws))
        for _ in range(flip_pairs):
            for frac, kind in ((0, "flip to eco"), (1, "flip to performance")):
                with self.workers(target, static_hp_frac=frac) as ws:
                    point.ticks.append(self.tick(target, kind, ws))
        return point


def measure(
    workdir: Path,
    assets: Path,
    *,
    nodes: int,
    workers: int,
    converged: int,
    flip_pairs: int,
    log: Callable[[str], None],
) -> list[Point]:
    """The emulator's run, then the real server's, on the same generated cluster."""
    cluster = cluster_for(nodes)
    runner = Runner(workdir, workers=workers, log=log)
    points = []
    try:
        makers: list[Callable[[], Target]] = [
            lambda: EmulatorTarget(workdir),
            lambda: ApiServerTarget(workdir, assets),
        ]
        for make in makers:
            target = make()
            try:
                points.append(
                    runner.run(target, cluster, converged=converged, flip_pairs=flip_pairs)
                )
            finally:
                target.close()
    finally:
        runner.close()
    return points
