"""``seed.generate_cluster`` and ``Emulator.load``/``seed`` (the seeding API itself).

Covers: determinism per seed, counts and zero-padded names, disjoint reserved /
unschedulable / unmanaged node sets, pending and terminal pods, every docs/SPEC.md §4
constraint shape and the shape label, custom mixes, argument errors.
"""

from __future__ import annotations

from collections import Counter

import pytest

from joulie_testbed.emulator import Emulator, seed


def test_same_seed_same_cluster_and_different_seed_differs() -> None:
    assert seed.generate_cluster(20, 3, seed=1) == seed.generate_cluster(20, 3, seed=1)
    assert seed.generate_cluster(20, 3, seed=1) != seed.generate_cluster(20, 3, seed=2)


def test_counts_and_zero_padded_names() -> None:
    cluster = seed.generate_cluster(120, 2.5, seed=4)
    assert len(cluster.nodes) == 120
    assert len(cluster.pods) == 300
    names = [n["metadata"]["name"] for n in cluster.nodes]
    assert names[:2] == ["node-00000", "node-00001"]
    assert names == sorted(names)
    assert seed.node_name(42, 100) == "node-00042"
    assert seed.node_name(42, 1_000_000) == "node-000042"


def test_node_sets_are_disjoint_and_labelled() -> None:
    cluster = seed.generate_cluster(50, 0, seed=5, reserved=4, unschedulable=3, unmanaged=2)
    reserved = {
        n["metadata"]["name"]
        for n in cluster.nodes
        if n["metadata"]["labels"].get(seed.RESERVED_LABEL) == "true"
    }
    cordoned = {n["metadata"]["name"] for n in cluster.nodes if n["spec"].get("unschedulable")}
    unmanaged = {
        n["metadata"]["name"]
        for n in cluster.nodes
        if "joulie.io/managed" not in n["metadata"]["labels"]
    }
    assert (len(reserved), len(cordoned), len(unmanaged)) == (4, 3, 2)
    assert not reserved & cordoned
    assert not reserved & unmanaged
    assert not cordoned & unmanaged
    assert cluster.pods == []


def test_custom_managed_label() -> None:
    cluster = seed.generate_cluster(
        3, 0, seed=1, managed_label=("node-role.kubernetes.io/worker", "")
    )
    assert all(
        n["metadata"]["labels"]["node-role.kubernetes.io/worker"] == "" for n in cluster.nodes
    )


def test_pending_pods_are_unbound_and_bound_pods_avoid_cordoned_nodes() -> None:
    cluster = seed.generate_cluster(
        40, 25, seed=6, unschedulable=10, pending_fraction=0.2, terminal_fraction=0.1
    )
    cordoned = {n["metadata"]["name"] for n in cluster.nodes if n["spec"].get("unschedulable")}
    phases = Counter(p["status"]["phase"] for p in cluster.pods)
    assert set(phases) == {"Pending", "Running", "Succeeded", "Failed"}
    assert 0.15 < phases["Pending"] / 1000 < 0.25
    assert 0.05 < (phases["Succeeded"] + phases["Failed"]) / 1000 < 0.15
    for p in cluster.pods:
        bound = p["spec"].get("nodeName")
        assert (bound is None) == (p["status"]["phase"] == "Pending")
        assert bound not in cordoned


def test_default_mix_has_every_shape_and_labels_it() -> None:
    cluster = seed.generate_cluster(100, 20, seed=7)
    shapes = Counter(p["metadata"]["labels"][seed.SHAPE_LABEL] for p in cluster.pods)
    assert set(shapes) == set(seed.SHAPES)
    assert shapes.most_common(1)[0][0] == "none"


@pytest.mark.parametrize(
    ("shape", "selector", "terms"),
    [
        ("none", None, None),
        ("selector-performance", "performance", None),
        ("selector-eco", "eco", None),
        ("selector-unknown", "ultra", None),
        ("in-performance", None, [[("In", ["performance"])]]),
        ("in-eco", None, [[("In", ["eco"])]]),
        ("in-eco-performance", None, [[("In", ["eco", "performance"])]]),
        ("or-terms", None, [[("In", ["performance"])], [("In", ["eco"])]]),
        ("notin-eco", None, [[("NotIn", ["eco"])]]),
        ("notin-performance", None, [[("NotIn", ["performance"])]]),
        ("does-not-exist", None, [[("DoesNotExist", None)]]),
        ("gt", None, [[("Gt", ["1"])]]),
    ],
)
def test_each_shape_builds_its_constraint(
    shape: str, selector: str | None, terms: list | None
) -> None:  # type: ignore[type-arg]
    pod = seed.generate_cluster(2, 1, seed=1, mix={shape: 1})[1][0]
    assert pod["metadata"]["labels"][seed.SHAPE_LABEL] == shape
    assert pod["spec"].get("nodeSelector", {}).get(seed.PROFILE_KEY) == selector
    required = (
        pod["spec"]
        .get("affinity", {})
        .get("nodeAffinity", {})
        .get("requiredDuringSchedulingIgnoredDuringExecution")
    )
    got = None
    if required is not None:
        got = [
            [
                (e["operator"], e.get("values"))
                for e in t["matchExpressions"]
                if e["key"] == seed.PROFILE_KEY
            ]
            for t in required["nodeSelectorTerms"]
        ]
    assert got == terms


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="unknown pod shapes"):
        seed.generate_cluster(1, 1, seed=1, mix={"turbo": 1})
    with pytest.raises(ValueError, match="exceeds"):
        seed.generate_cluster(2, 1, seed=1, reserved=2, unschedulable=1)


def test_emulator_seed_loads_what_it_generates() -> None:
    emu = Emulator()
    cluster = emu.seed(10, 3, seed=8)
    assert [n["metadata"]["name"] for n in emu.list_objects("nodes")] == [
        n["metadata"]["name"] for n in cluster.nodes
    ]
    assert len(emu.list_objects("pods")) == 30
    stored = emu.list_objects("pods", "ns-00")[0]
    assert stored["metadata"]["uid"]
    assert stored["metadata"]["resourceVersion"]
