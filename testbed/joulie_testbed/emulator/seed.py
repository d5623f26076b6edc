"""Generated clusters: nodes and pods with the scheduling-constraint shapes of docs/SPEC.md §4.

Deterministic for a given ``seed``. Every pod carries its shape in the label
``emulator.joulie.io/shape`` so a test can compute the expected demand without
re-implementing the classifier. Names are zero-padded (``node-00042``,
``pod-000042``) so byte order equals numeric order. Pending pods have no
``spec.nodeName``; terminal pods (Succeeded/Failed) stay bound to their node.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

PROFILE_KEY = "joulie.io/power-profile"
SHAPE_LABEL = "emulator.joulie.io/shape"
RESERVED_LABEL = "joulie.io/reserved"

Obj = dict[str, Any]


def _required(*terms: list[Obj]) -> Obj:
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": t} for t in terms]
                }
            }
        }
    }


def _expr(operator: str, *values: str) -> list[Obj]:
    expr: Obj = {"key": PROFILE_KEY, "operator": operator}
    if values:
        expr["values"] = list(values)
    return [expr]


#: Shape name -> builder of the pod-spec fields carrying the constraint (docs/SPEC.md §4 rows).
SHAPES: dict[str, Callable[[], Obj]] = {
    "none": dict,
    "selector-performance": lambda: {"nodeSelector": {PROFILE_KEY: "performance"}},
    "selector-eco": lambda: {"nodeSelector": {PROFILE_KEY: "eco"}},
    "selector-unknown": lambda: {"nodeSelector": {PROFILE_KEY: "ultra"}},
    "in-performance": lambda: _required(_expr("In", "performance")),
    "in-eco": lambda: _required(_expr("In", "eco")),
    "in-eco-performance": lambda: _required(_expr("In", "eco", "performance")),
    "or-terms": lambda: _required(_expr("In", "performance"), _expr("In", "eco")),
    "notin-eco": lambda: _required(_expr("NotIn", "eco")),
    "notin-performance": lambda: _required(_expr("NotIn", "performance")),
    "does-not-exist": lambda: _required(_expr("DoesNotExist")),
    "gt": lambda: _required(_expr("Gt", "1")),
}
#: Default mix: mostly unconstrained pods, every other shape present.
DEFAULT_MIX: dict[str, float] = {"none": 0.56, **{s: 0.04 for s in SHAPES if s != "none"}}


class Cluster(NamedTuple):
    """Generated objects, ready for ``Emulator.load(cluster.nodes, cluster.pods)``."""

    nodes: list[Obj]
    pods: list[Obj]


def node_name(index: int, total: int) -> str:
    return f"node-{index:0{max(5, len(str(total - 1)))}d}"


def make_node(name: str, *, labels: Mapping[str, str], unschedulable: bool = False) -> Obj:
    node: Obj = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
        "spec": {"unschedulable": True} if unschedulable else {},
        "status": {
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    return node


def make_pod(
    name: str,
    *,
    namespace: str,
    shape: str,
    node: str | None,
    phase: str,
    labels: Mapping[str, str] | None = None,
) -> Obj:
    spec: Obj = {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.9"}]}
    spec.update(SHAPES[shape]())
    if node is not None:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**(labels or {}), SHAPE_LABEL: shape},
        },
        "spec": spec,
        "status": {"phase": phase},
    }


def generate_cluster(
    nodes: int,
    pods_per_node: float,
    *,
    seed: int,
    reserved: int = 0,
    unschedulable: int = 0,
    unmanaged: int = 0,
    pending_fraction: float = 0.1,
    terminal_fraction: float = 0.05,
    mix: Mapping[str, float] | None = None,
    managed_label: tuple[str, str] = ("joulie.io/managed", "true"),
    reserved_label: str = RESERVED_LABEL,
    namespaces: int = 10,
) -> Cluster:
    """A reproducible cluster of ``nodes`` nodes and ``round(nodes * pods_per_node)`` pods.

    ``reserved``, ``unschedulable`` and ``unmanaged`` pick disjoint random node sets
    (reserved label ``"true"``, ``spec.unschedulable``, no managed label). Pods are
    pending with ``pending_fraction``, terminal with ``terminal_fraction`` (half
    Succeeded, half Failed), else Running; bound pods go to schedulable nodes.
    ``mix`` weights the shapes of ``SHAPES`` (missing shapes weigh 0).
    """
    weights = dict(mix if mix is not None else DEFAULT_MIX)
    unknown = set(weights) - set(SHAPES)
    if unknown:
        raise ValueError(f"unknown pod shapes {sorted(unknown)}; known: {sorted(SHAPES)}")
    if reserved + unschedulable + unmanaged > nodes:
        raise ValueError("reserved + unschedulable + unmanaged exceeds the node count")
    rng = random.Random(seed)
    names = [node_name(i, nodes) for i in range(nodes)]
    picked = rng.sample(names, reserved + unschedulable + unmanaged)
    reserved_set = set(picked[:reserved])
    unschedulable_set = set(picked[reserved : reserved + unschedulable])
    unmanaged_set = set(picked[reserved + unschedulable :])

    node_objs = []
    for name in names:
        labels: dict[str, str] = {}
        if name not in unmanaged_set:
            labels[managed_label[0]] = managed_label[1]
        if name in reserved_set:
            labels[reserved_label] = "true"
        node_objs.append(make_node(name, labels=labels, unschedulable=name in unschedulable_set))

    schedulable = [n for n in names if n not in unschedulable_set]
    total = int(nodes * pods_per_node + 0.5)
    width = max(6, len(str(total - 1)))
    shapes = rng.choices(list(weights), weights=list(weights.values()), k=total) if total else []
    pod_objs = []
    for i, shape in enumerate(shapes):
        roll = rng.random()
        node: str | None = rng.choice(schedulable) if schedulable else None
        if roll < pending_fraction or node is None:
            phase, node = "Pending", None
        elif roll < pending_fraction + terminal_fraction:
            phase = "Succeeded" if rng.random() < 0.5 else "Failed"
        else:
            phase = "Running"
        pod_objs.append(
            make_pod(
                f"pod-{i:0{width}d}",
                namespace=f"ns-{i % max(1, namespaces):02d}",
                shape=shape,
                node=node,
                phase=phase,
                labels={"app": f"app-{i % 50:02d}"},
            )
        )
    return Cluster(node_objs, pod_objs)
