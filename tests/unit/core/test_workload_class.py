"""Classification of the NodeTwin generation (NODETWIN.md §4 and §9.1; docs/SPEC.md §13.5).

Every case goes in as a raw pod manifest, through the three roads a pod takes: the
list-fed tick (snapshot.py's pre-filter, snapshot_parse, classify), the watch-fed
cache (cache.pod_contribution) and the pure classifier itself.

Ported: C1 to C24 (the 24 pods of NODETWIN.md §4.4), the counting rows 25 to 30 and
N1 to N5. We deliberately differ on two rows, both the same rule, and say so below:
**row 26 and N2, a Pending performance-only pod**. The reference no longer counts it
(neither for the guard nor for queue_aware_v1's P); we keep counting it (docs/SPEC.md
§4.4, §13.5): a bound-but-Pending pod (image pull, init containers) must hold its
node in performance, and queue_aware_v1 must see the unscheduled queue it is named
after. Over-counting keeps a node in performance; under-counting could downgrade a
node under sensitive work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from joulie_tasks.core import cache, classify, models, snapshot_parse
from joulie_tasks.workflow import snapshot
from tests.fakes import FakeKube

KEY = "joulie.io/power-profile"
ANN = "joulie.io/workload-class"
P, E, G = (
    models.DemandClass.PERFORMANCE_ONLY,
    models.DemandClass.ECO_ONLY,
    models.DemandClass.GENERAL,
)


def expr(op: str, *values: str) -> dict[str, Any]:
    e: dict[str, Any] = {"key": KEY, "operator": op}
    if values:
        e["values"] = list(values)
    return e


def pod(
    name: str = "p",
    *,
    ann: str | None = None,
    ns: str | None = None,
    terms: Sequence[Sequence[dict[str, Any]]] = (),
    phase: str | None = "Running",
    deleting: bool = False,
    node: str | None = "n1",
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "default"}
    if ann is not None:
        metadata["annotations"] = {ANN: ann}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "x"}]}
    if node is not None:
        spec["nodeName"] = node
    if ns is not None:
        spec["nodeSelector"] = {KEY: ns}
    if terms:
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": list(t)} for t in terms]
                }
            }
        }
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
    if phase is not None:
        obj["status"] = {"phase": phase}
    return obj


# C1 to C24: NODETWIN.md §4.4 (class; "counts when Running" is class == performance-only).
CLASS_CASES = [
    ("C1-nothing", pod(), G),
    ("C2-ann-performance", pod(ann="performance"), P),
    ("C3-ann-performance-padded", pod(ann=" performance "), P),
    ("C4-ann-Performance", pod(ann="Performance"), G),
    ("C5-ann-performance-only", pod(ann="performance-only"), G),
    ("C6-ann-standard", pod(ann="standard"), G),
    ("C7-ann-eco", pod(ann="eco"), G),
    ("C8-ann-standard+ns-performance", pod(ann="standard", ns="performance"), P),
    ("C9-ann-performance+ns-eco", pod(ann="performance", ns="eco"), P),
    ("C10-ann-performance+In-eco", pod(ann="performance", terms=[[expr("In", "eco")]]), P),
    ("C11-ann-eco+ns-eco", pod(ann="eco", ns="eco"), E),
    ("C12-ann-standard+In-eco", pod(ann="standard", terms=[[expr("In", "eco")]]), E),
    ("C13-ns-performance", pod(ns="performance"), P),
    ("C14-ns-eco", pod(ns="eco"), E),
    ("C15-In-performance", pod(terms=[[expr("In", "performance")]]), P),
    ("C16-In-eco", pod(terms=[[expr("In", "eco")]]), E),
    ("C17-In-eco-performance", pod(terms=[[expr("In", "eco", "performance")]]), G),
    ("C18-NotIn-eco", pod(terms=[[expr("NotIn", "eco")]]), P),
    ("C19-NotIn-performance", pod(terms=[[expr("NotIn", "performance")]]), G),
    ("C20-DoesNotExist", pod(terms=[[expr("DoesNotExist")]]), G),
    ("C21-Gt", pod(terms=[[expr("Gt", "1")]]), G),
    ("C22-ns-ultra", pod(ns="ultra"), G),
    (
        "C23-two-terms",
        pod(terms=[[expr("In", "performance")], [expr("In", "eco")]]),
        P,
    ),
    ("C24-ns-performance+In-eco", pod(ns="performance", terms=[[expr("In", "eco")]]), P),
]


def listed_demand(*pods: dict[str, Any]) -> models.Demand:
    """The list-fed road: the snapshot stage's pre-filter and parse, then classify."""
    kube = FakeKube()
    for i, obj in enumerate(pods):
        kube.add("pods", {**obj, "metadata": {**obj["metadata"], "name": f"p{i}"}})
    snap = snapshot.take_snapshot(gateway=kube, tick_time=0.0, tick_id="t", page_size=50)
    return classify.summarise_demand(snap.pods)


def cached_codes(*pods: dict[str, Any]) -> list[str]:
    """The watch-fed road: each pod reduced to its contribution code."""
    return [cache.pod_contribution(obj) for obj in pods]


@pytest.mark.parametrize(
    ("obj", "expected"), [c[1:] for c in CLASS_CASES], ids=[c[0] for c in CLASS_CASES]
)
def test_the_class_of_each_pod_on_every_road(
    obj: dict[str, Any], expected: models.DemandClass
) -> None:
    info = snapshot_parse.pod_info_from_manifest(obj)
    assert info is not None
    assert classify.classify_pod(info) is expected
    demand = listed_demand(obj)
    assert demand.performance_pods == int(expected is P)
    assert demand.eco_pods == int(expected is E)
    assert demand.performance_pods_by_node == ({"n1": 1} if expected is P else {})
    (code,) = cached_codes(obj)
    assert code.startswith(cache.PERFORMANCE) == (expected is P)
    assert (code == cache.ECO) == (expected is E)


# Rows 25 to 30 and N4, N5: which performance-only pods count (guard and P).
COUNT_CASES = [
    ("25-running", pod(ann="performance"), 1),
    # Row 26: we differ on purpose (module docstring): the reference gives 0.
    ("26-pending-DIFFERS", pod(ann="performance", phase="Pending"), 1),
    ("27-deleting", pod(ann="performance", deleting=True), 0),
    ("28-succeeded", pod(ann="performance", phase="Succeeded"), 0),
    ("28-failed", pod(ann="performance", phase="Failed"), 0),
    ("29-phase-empty", pod(ann="performance", phase=None), 1),
    ("30-phase-Unknown", pod(ann="performance", phase="Unknown"), 1),
    ("N4-annotation-only", pod(ann="performance"), 1),
]


@pytest.mark.parametrize(
    ("obj", "count"), [c[1:] for c in COUNT_CASES], ids=[c[0] for c in COUNT_CASES]
)
def test_which_performance_pods_count(obj: dict[str, Any], count: int) -> None:
    assert listed_demand(obj).performance_pods == count
    assert listed_demand(obj).performance_pods_by_node == ({"n1": 1} if count else {})
    (code,) = cached_codes(obj)
    assert code == (f"{cache.PERFORMANCE}|n1" if count else "")


def test_n1_count_is_one() -> None:
    pods = [
        pod(ns="performance"),
        pod(ns="performance", deleting=True),
        pod(ns="performance", phase="Succeeded"),
        pod(terms=[[expr("NotIn", "performance")]]),
    ]
    assert listed_demand(*pods).performance_pods == 1


def test_n2_a_pending_performance_pod_counts_here_unlike_the_reference() -> None:
    # Deliberate difference (module docstring): the reference's count is 0.
    unscheduled = pod(ann="performance", phase="Pending", node=None)
    bound = pod(ann="performance", phase="Pending")
    assert listed_demand(unscheduled).performance_pods == 1  # raises queue_aware_v1's P
    assert listed_demand(bound).performance_pods_by_node == {"n1": 1}  # holds the node
    assert cached_codes(unscheduled, bound) == ["P|", "P|n1"]


def test_n3_guard_count_on_one_node() -> None:
    pods = [
        pod(terms=[[expr("In", "performance")]]),
        pod(terms=[[expr("In", "eco")]]),
        pod(),
        pod(terms=[[expr("In", "performance")]], phase="Succeeded"),
    ]
    assert listed_demand(*pods).performance_pods_by_node == {"n1": 1}


def test_n5_empty_and_unknown_phases_count() -> None:
    pods = [pod(ann="performance", phase=None), pod(ann="performance", phase="Unknown")]
    assert listed_demand(*pods).performance_pods == 2


def test_a_non_string_annotation_is_ignored() -> None:
    obj = pod()
    obj["metadata"]["annotations"] = {ANN: 1}
    info = snapshot_parse.pod_info_from_manifest(obj)
    assert info is not None
    assert info.workload_class is None
    assert classify.classify_pod(info) is G
