"""The demo's cluster and the workload that changes between its ticks.

Why a scripted workload: the operator only shows behaviour when demand moves. The
demo's performance-pod demand follows one smooth wave over the run (low, a peak,
low again), scaled to the policy so that at the peak the queue-aware policy wants
about three quarters of the nodes in performance. Pods behave as a scheduler
would make them: a performance-only pod is bound only to a node labelled
``performance`` that has room (``per_node`` such pods, the policy's own
absorption figure), otherwise it stays Pending — and Pending performance pods are
exactly the demand that makes ``queue_aware_v1`` raise the performance count.
When demand falls, random pods finish, so some remain on nodes the policy now
plans eco: those downgrades are deferred (DrainingPerformance) until they finish.
Eco-only pods go to eco nodes, general pods anywhere; both churn a little.

Deterministic for a given seed and the same sequence of node labels (the labels are
the operator's output, itself deterministic). The cluster is driven only through
the emulator's Python API (``put_object``, ``delete_object``, ``list_objects``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from joulie_testbed.emulator import Emulator
from joulie_testbed.emulator import seed as seeding

NAMESPACE = "demo"
MANAGED_LABEL = ("joulie.io/managed", "true")
PERFORMANCE = "performance"
ECO = "eco"
#: Shapes (docs/SPEC.md §4 rows, see emulator/seed.py) used for each demand class.
PERF_SHAPES = ("selector-performance", "in-performance", "notin-eco")
ECO_SHAPES = ("selector-eco", "in-eco")
GENERAL_SHAPES = ("none", "in-eco-performance", "selector-unknown")


def demand_wave(step: int, steps: int, peak: int) -> int:
    """Performance pods wanted at ``step`` of ``steps``: sin² from low to ``peak`` and back."""
    if steps <= 0 or peak <= 0:
        return 0
    return round(peak * math.sin(math.pi * (step + 0.5) / steps) ** 2)


@dataclass
class _Pod:
    name: str
    shape: str
    node: str | None


@dataclass
class Workload:
    """The demo cluster (nodes, pods) and its per-step changes, applied to an emulator."""

    emulator: Emulator
    managed: int
    steps: int
    per_node: int
    seed: int
    profile_label: str
    reserved_label: str
    nodes: list[str] = field(default_factory=list)
    reserved: str = ""
    unschedulable: str = ""
    peak: int = 0
    _rng: random.Random = field(default_factory=random.Random)
    _perf: dict[str, _Pod] = field(default_factory=dict)
    _other: dict[str, _Pod] = field(default_factory=dict)
    _next: int = 0
    finished: int = 0

    def create_cluster(self) -> None:
        """``managed`` eligible nodes plus one reserved and one unschedulable node."""
        self._rng = random.Random(self.seed)
        total = self.managed + 2
        names = [f"node-{i:02d}" for i in range(1, total + 1)]
        self.reserved, self.unschedulable = self._rng.sample(names, 2)
        self.nodes = [n for n in names if n not in (self.reserved, self.unschedulable)]
        for name in names:
            labels = {MANAGED_LABEL[0]: MANAGED_LABEL[1]}
            if name == self.reserved:
                labels[self.reserved_label] = "true"
            node = seeding.make_node(name, labels=labels, unschedulable=name == self.unschedulable)
            self.emulator.put_object(node)
        self.peak = max(1, self.per_node) * max(1, math.ceil(self.managed * 0.75))
        for _ in range(self.managed):  # a baseline of eco-only and general pods
            self._add_other(self._rng.choice(ECO_SHAPES))
            self._add_other(self._rng.choice(GENERAL_SHAPES))

    def step(self, index: int) -> int:
        """Bring the cluster to step ``index`` of the wave; returns the demand now present.

        Order matters: Pending pods are bound first (to the performance nodes the
        operator just created), then demand is cut or grown. Cutting after binding
        leaves pods scattered over nodes that may be planned eco next: deferrals.
        """
        labels = self._profiles()
        self._bind_pending(labels)
        target = demand_wave(index, self.steps, self.peak)
        active = sorted(self._perf)
        if len(active) > target:
            for name in sorted(self._rng.sample(active, len(active) - target)):
                self._finish(self._perf.pop(name))
        for _ in range(target - len(active)):
            self._add_perf(labels)
        self._churn_other(labels)
        return len(self._perf)

    def pods_by_node(self) -> dict[str, int]:
        """Active performance pods per node, as the demo placed them."""
        counts: dict[str, int] = {}
        for pod in self._perf.values():
            if pod.node is not None:
                counts[pod.node] = counts.get(pod.node, 0) + 1
        return counts

    @property
    def performance_pods(self) -> int:
        """Active performance pods, bound or Pending."""
        return len(self._perf)

    @property
    def pending(self) -> int:
        return sum(1 for p in self._perf.values() if p.node is None)

    # --- internals -----------------------------------------------------------------------

    def _profiles(self) -> dict[str, str]:
        out = {}
        for node in self.emulator.list_objects("nodes"):
            labels: Mapping[str, str] = node["metadata"].get("labels", {})
            out[node["metadata"]["name"]] = labels.get(self.profile_label, "")
        return out

    def _room(self, labels: Mapping[str, str]) -> list[str]:
        used = self.pods_by_node()
        return [
            n
            for n in self.nodes
            if labels.get(n) == PERFORMANCE and used.get(n, 0) < max(1, self.per_node)
        ]

    def _bind_pending(self, labels: Mapping[str, str]) -> None:
        for name in sorted(self._perf):
            pod = self._perf[name]
            if pod.node is None:
                room = self._room(labels)
                if not room:
                    return
                pod.node = self._rng.choice(room)
                self._put(pod)

    def _add_perf(self, labels: Mapping[str, str]) -> None:
        room = self._room(labels)
        pod = _Pod(self._name("perf"), self._rng.choice(PERF_SHAPES), None)
        pod.node = self._rng.choice(room) if room else None
        self._perf[pod.name] = pod
        self._put(pod)

    def _add_other(self, shape: str, labels: Mapping[str, str] | None = None) -> None:
        if shape in ECO_SHAPES:
            candidates = [n for n in self.nodes if (labels or {}).get(n) == ECO]
        else:
            candidates = [*self.nodes, self.reserved]
        node = self._rng.choice(candidates) if candidates else None
        pod = _Pod(self._name("eco" if shape in ECO_SHAPES else "app"), shape, node)
        self._other[pod.name] = pod
        self._put(pod)

    def _churn_other(self, labels: Mapping[str, str]) -> None:
        """A few eco-only and general pods finish and as many arrive."""
        victims = self._rng.sample(sorted(self._other), min(2, len(self._other)))
        for name in victims:
            self._finish(self._other.pop(name))
            self._add_other(self._rng.choice((*ECO_SHAPES, *GENERAL_SHAPES)), labels)

    def _finish(self, pod: _Pod) -> None:
        """Half the finished pods stay as Succeeded (not active), half are deleted."""
        self.finished += 1
        if self._rng.random() < 0.5:
            self._put(pod, phase="Succeeded")
        else:
            self.emulator.delete_object("pods", pod.name, NAMESPACE)

    def _name(self, kind: str) -> str:
        self._next += 1
        return f"{kind}-{self._next:04d}"

    def _put(self, pod: _Pod, *, phase: str | None = None) -> None:
        obj: dict[str, Any] = seeding.make_pod(
            pod.name,
            namespace=NAMESPACE,
            shape=pod.shape,
            node=pod.node,
            phase=phase or ("Running" if pod.node else "Pending"),
            labels={"app.kubernetes.io/part-of": "joulie-demo"},
        )
        self.emulator.put_object(obj)
