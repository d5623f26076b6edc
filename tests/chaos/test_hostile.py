"""Hostile objects: node names that collide after sanitisation, 253-character names,
pods with 1,000 affinity terms, null and missing fields, unknown operators,
non-string values, 100,000 pods on one node.

The oracle is the pure core (unit-tested against docs/SPEC.md §4 and §7) run on the same
objects: the distributed workflow must neither crash nor disagree with it, two
nodes must never share a profile object, and no node may keep two.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from joulie_tasks.adapters import store
from joulie_tasks.core import naming
from joulie_testbed.chaos import managed_profiles
from joulie_testbed.emulator import Emulator
from joulie_testbed.emulator.seed import make_pod
from joulie_testbed.procs import Stack
from tests.chaos.scenario import Chaos

PROFILE_KEY = "joulie.io/power-profile"
LONG_NAME = ".".join(["a" * 63] * 3) + "." + "b" * 61  # 253 characters, a valid name


def _node(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"joulie.io/managed": "true"}},
        "spec": {},
        **extra,
    }


def _pod(name: str, spec: Any, **top: Any) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
        "status": {"phase": "Running"},
    }
    pod.update(top)
    return pod


def _required(*terms: list[Any]) -> dict[str, Any]:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": t} for t in terms]
            }
        }
    }


def _base(emulator: Emulator) -> None:
    for i in range(6):
        emulator.put_object(_node(f"node-{i:05d}"))


def thousand_terms(emulator: Emulator) -> str:
    _base(emulator)
    terms = [[{"key": PROFILE_KEY, "operator": "In", "values": ["eco"]}]] * 999
    terms.append([{"key": PROFILE_KEY, "operator": "In", "values": ["performance"]}])
    emulator.put_object(
        _pod("many-terms", {"nodeName": "node-00005", "affinity": _required(*terms)})
    )
    return "a pod (on an eco-planned node) with 1,000 OR-ed required affinity terms"


def nulls(emulator: Emulator) -> str:
    _base(emulator)
    emulator.put_object(_node("node-nullspec", spec=None, status=None))
    specs: list[Any] = [
        None,
        {"nodeSelector": None, "affinity": None, "nodeName": "node-00005"},
        {"nodeName": "node-00005", "affinity": {"nodeAffinity": None}},
        {"nodeName": "node-00004", "affinity": _required(None)},  # type: ignore[arg-type]
        {"nodeName": "node-00004", "affinity": _required([None])},
        {"affinity": _required([{"key": PROFILE_KEY, "operator": "In", "values": None}])},
        {"affinity": _required([{"key": PROFILE_KEY, "operator": None}])},
        {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": None}}},
        {"affinity": _required([{"key": PROFILE_KEY}])},
    ]
    for i, spec in enumerate(specs):
        emulator.put_object(_pod(f"null-{i}", spec))
    emulator.put_object(_pod("no-status", {"nodeName": "node-00005"}, status=None))
    return "null spec/status, null nodeSelector, affinity, terms, matchExpressions, values"


def unknown_operators(emulator: Emulator) -> str:
    _base(emulator)
    for i, op in enumerate(("Foo", "in", "NOTIN", "", "Exists")):
        expr = {"key": PROFILE_KEY, "operator": op, "values": ["performance"]}
        emulator.put_object(
            _pod(f"op-{i}", {"nodeName": "node-00005", "affinity": _required([expr])})
        )
    return "required affinity with operators Foo, in, NOTIN, '', Exists (+ values)"


def non_strings(emulator: Emulator) -> str:
    _base(emulator)
    odd: list[Any] = [5, True, None, ["performance"], {"a": 1}]
    for i, value in enumerate(odd):
        emulator.put_object(_pod(f"sel-{i}", {"nodeSelector": {PROFILE_KEY: value}}))
    expr = {"key": PROFILE_KEY, "operator": "In", "values": [1, True, None, {"x": 1}]}
    emulator.put_object(_pod("vals", {"nodeName": "node-00005", "affinity": _required([expr])}))
    emulator.put_object(_pod("key", {"affinity": _required([{"key": 7, "operator": "In"}])}))
    return "nodeSelector values 5/true/null/list/object; In values of numbers and nulls"


CASES: dict[str, Callable[[Emulator], str]] = {
    "pods with 1,000 affinity terms": thousand_terms,
    "null and missing fields": nulls,
    "unknown operators": unknown_operators,
    "non-string values": non_strings,
}


@pytest.mark.parametrize("case", list(CASES), ids=["terms", "nulls", "operators", "types"])
def test_malformed_pods_and_nodes(
    chaos: Chaos, stack: Stack, emulator: Emulator, state: store.RedisStore, case: str
) -> None:
    action = CASES[case](emulator)
    worker = stack.start_worker("w1")
    drive = chaos.driver()

    n = drive.converge(max_ticks=1)
    report = state.tick_summaries()[0].model_dump(mode="json")
    found = chaos.problems()
    warned = worker.log().count("handled conservatively")
    chaos.row.fill(
        drive,
        found,
        fault=f"hostile objects: {case}",
        action=action,
        behaviour=(
            f"tick completed in {report['duration_s']:.2f} s; every pod classified as the core "
            f"decides; {warned} malformed-pod warning line(s) (capped at 5 per tick)"
        ),
    )
    assert worker.alive
    assert n == 1
    assert found == []


def test_node_names_that_collide_after_sanitisation(
    chaos: Chaos, stack: Stack, emulator: Emulator
) -> None:
    # Given nodes whose names sanitise alike, and a 253-character one
    names = ["gpu.a", "gpu-a", "gpu-a.x", "gpu-a-x", "gpu.a.x", LONG_NAME]
    for name in names:
        emulator.put_object(_node(name))
    stack.start_worker("w1")
    drive = chaos.driver()
    drive.converge(max_ticks=1)
    owners = {p["spec"]["nodeName"]: p["metadata"]["name"] for p in managed_profiles(emulator)}
    assert sorted(owners) == sorted(names)
    assert all(len(npp) <= naming.MAX_NAME_LENGTH for npp in owners.values())

    # When the node holding the plain name goes away, the other one inherits it
    emulator.delete_object("nodes", "gpu-a")
    n = drive.converge(max_ticks=3)
    found = chaos.problems()
    chaos.row.fill(
        drive,
        found,
        fault="hostile objects: names that collide after sanitisation, 253 characters",
        action=(
            "nodes gpu.a, gpu-a, gpu-a.x, gpu-a-x, gpu.a.x and a 253-character name; then gpu-a "
            "deleted, so gpu.a's profile name changes"
        ),
        behaviour=(
            "one distinct profile per node (hash suffix, ≤ 253 characters); after the deletion "
            "no node kept two profile objects and none was left for the deleted node"
        ),
    )
    assert n <= 3
    assert found == []


def test_a_hundred_thousand_pods_on_one_node(
    chaos: Chaos, stack: Stack, emulator: Emulator, state: store.RedisStore
) -> None:
    _base(emulator)
    shapes = ("none", "in-eco", "notin-performance", "gt", "selector-eco")
    pods = [
        make_pod(
            f"pod-{i:06d}",
            namespace=f"ns-{i % 10}",
            shape=shapes[i % len(shapes)],
            node="node-00005",
            phase="Running",
        )
        for i in range(100_000)
    ]
    pods.append(
        make_pod(
            "perf-1", namespace="ns-0", shape="in-performance", node="node-00005", phase="Running"
        )
    )
    emulator.load(pods=pods)
    stack.start_worker("w1")
    drive = chaos.driver()

    started = time.monotonic()
    n = drive.converge(max_ticks=1, lock_wait=60)
    elapsed = time.monotonic() - started
    report = state.tick_summaries()[0].model_dump(mode="json")
    found = chaos.problems()
    chaos.row.fill(
        drive,
        found,
        fault="hostile objects: 100,000 pods on one node",
        action="100,001 pods bound to one eco-planned node (one performance pod)",
        behaviour=(
            f"tick completed in {report['duration_s']:.1f} s ({elapsed:.1f} s with queueing); "
            "the one performance pod kept the node draining"
        ),
    )
    labels = emulator.get_node("node-00005")["metadata"]["labels"]
    assert labels["joulie.io/draining"] == "true"
    assert n == 1
    assert found == []
