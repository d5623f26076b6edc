"""The pure half of the write stage (docs/SPEC.md §7).

Covers: a converged cluster costs no write; a fresh cluster gets everything; hand
edits to profile objects and labels are restored; ineligible nodes are untouched;
``gpu.a`` and ``gpu-a`` never share an object; the manifest body; simulated apply.
"""

from __future__ import annotations

import pytest

from joulie_tasks.core import models, write
from tests.unit.builders import (
    DRAINING_LABEL,
    ECO_CAP,
    PERF_CAP,
    PROFILE_LABEL,
    make_node,
    make_npp,
    make_params,
    perf_pod,
    run_core,
)

P = models.Profile.PERFORMANCE
E = models.Profile.ECO

# Two managed nodes under static 0.5: a → performance, b → eco.
CONVERGED_NODES = [
    make_node("a", profile="performance", draining="false"),
    make_node("b", profile="eco", draining="false"),
]
CONVERGED_NPPS = [make_npp("a"), make_npp("b", profile="eco", cap=ECO_CAP)]


def test_a_converged_cluster_needs_no_writes() -> None:
    assert run_core(CONVERGED_NODES, profiles=CONVERGED_NPPS).empty


def test_a_fresh_cluster_gets_labels_and_profile_objects_for_every_eligible_node() -> None:
    writes = run_core([make_node("b"), make_node("a")])
    assert [(w.node, w.labels) for w in writes.labels] == [
        ("a", {PROFILE_LABEL: "performance", DRAINING_LABEL: "false"}),
        ("b", {PROFILE_LABEL: "eco", DRAINING_LABEL: "false"}),
    ]
    assert [(w.name, w.create, w.resource_version) for w in writes.profiles] == [
        ("node-a", True, None),
        ("node-b", True, None),
    ]
    assert writes.profiles[1].spec == models.NppSpec(
        node_name=models.NodeName("b"),
        profile=E,
        cap_watts=ECO_CAP,
        policy_name="static-partition-v1",
    )
    assert writes.nodes() == {"a", "b"}


@pytest.mark.parametrize(
    "edit",
    [
        {"profile": "performance"},
        {"cap": 999.0},
        {"policy": "hand-made"},
        {"managed_by": None},
        {"managed_by": "someone"},
    ],
    ids=["profile", "cap", "policy", "owner-label-removed", "owner-label-changed"],
)
def test_a_hand_edited_profile_object_is_restored(edit: dict[str, object]) -> None:
    edited = make_npp("b", **{"profile": "eco", "cap": ECO_CAP, "resource_version": "31", **edit})  # type: ignore[arg-type]
    writes = run_core(CONVERGED_NODES, profiles=[CONVERGED_NPPS[0], edited])
    assert writes.labels == ()
    (only,) = writes.profiles
    assert (only.name, only.create, only.resource_version) == ("node-b", False, "31")
    assert (only.spec.profile, only.spec.cap_watts) == (E, ECO_CAP)


def test_a_profile_object_pointing_at_another_node_is_restored() -> None:
    hijacked = make_npp("z", name="node-b", profile="eco", cap=ECO_CAP)
    writes = run_core(CONVERGED_NODES, profiles=[CONVERGED_NPPS[0], hijacked])
    assert [(w.name, w.spec.node_name) for w in writes.profiles] == [("node-b", "b")]


def test_an_integer_cap_read_back_as_float_is_not_a_change() -> None:
    assert run_core(CONVERGED_NODES, profiles=[make_npp("a", cap=5000), CONVERGED_NPPS[1]]).empty


@pytest.mark.parametrize(
    ("profile", "draining"),
    [("eco", "false"), ("performance", None), ("performance", "true"), ("turbo", "false")],
    ids=["wrong-profile", "draining-removed", "draining-flipped", "garbage"],
)
def test_a_hand_edited_label_is_restored_with_both_labels(
    profile: str, draining: str | None
) -> None:
    nodes = [make_node("a", profile=profile, draining=draining), CONVERGED_NODES[1]]
    writes = run_core(nodes, profiles=CONVERGED_NPPS)
    assert writes.profiles == ()
    assert [(w.node, w.labels) for w in writes.labels] == [
        ("a", {PROFILE_LABEL: "performance", DRAINING_LABEL: "false"})
    ]


def test_ineligible_nodes_are_never_written() -> None:
    outsiders = [
        make_node("x-unmanaged", managed=False, profile="garbage"),
        make_node("x-cordoned", unschedulable=True),
        make_node("x-reserved", labels={"joulie.io/reserved": "true"}, profile="eco"),
    ]
    stale = make_npp("x-reserved", profile="eco", cap=1.0, policy="old")
    writes = run_core([*CONVERGED_NODES, *outsiders], profiles=[*CONVERGED_NPPS, stale])
    assert writes.empty


def test_nodes_whose_names_sanitise_alike_never_share_an_object() -> None:
    # gpu-a is not managed; gpu.a is. gpu-a keeps "node-gpu-a" even so.
    nodes = [make_node("gpu-a", managed=False), make_node("gpu.a")]
    someone_elses = make_npp("gpu-a", name="node-gpu-a")
    writes = run_core(nodes, profiles=[someone_elses])
    (created,) = writes.profiles
    assert created.create is True
    assert created.name.startswith("node-gpu-a-")
    assert created.spec.node_name == "gpu.a"


def test_a_deferred_downgrade_writes_eco_with_draining_true() -> None:
    nodes = [make_node("a", profile="performance"), make_node("b", profile="performance")]
    writes = run_core(nodes, pods=[perf_pod(node="b")])
    labels: dict[str, dict[str, str]] = {w.node: w.labels for w in writes.labels}
    assert labels["b"] == {PROFILE_LABEL: "eco", DRAINING_LABEL: "true"}


def test_unknown_pods_write_no_downgrade() -> None:
    nodes = [make_node("a", profile="performance"), make_node("b", profile="performance")]
    npps = [make_npp("a"), make_npp("b")]
    writes = run_core(nodes, pods=None, profiles=npps)
    # b keeps its performance object; only the missing draining label is filled in.
    assert writes.profiles == ()
    assert {w.node: w.labels[PROFILE_LABEL] for w in writes.labels} == {
        "a": "performance",
        "b": "performance",
    }


def test_the_manifest_body_follows_the_crd() -> None:
    spec = models.NppSpec(
        node_name=models.NodeName("gpu.a"),
        profile=P,
        cap_watts=PERF_CAP,
        policy_name="queue-aware-v1",
    )
    assert write.npp_manifest(models.NppName("node-gpu-a-x"), spec) == {
        "apiVersion": "joulie.io/v1alpha1",
        "kind": "NodePowerProfile",
        "metadata": {"name": "node-gpu-a-x", "labels": {"joulie.io/managed-by": "operator"}},
        "spec": {
            "nodeName": "gpu.a",
            "profile": "performance",
            "cpu": {"packagePowerCapWatts": 5000},
            "policy": {"name": "queue-aware-v1"},
        },
    }


def test_a_replace_manifest_carries_the_resource_version_and_fractional_caps() -> None:
    spec = models.NppSpec(
        node_name=models.NodeName("a"), profile=E, cap_watts=120.5, policy_name="p"
    )
    body = write.npp_manifest(models.NppName("node-a"), spec, resource_version="12")
    assert body["metadata"] == {
        "name": "node-a",
        "labels": {"joulie.io/managed-by": "operator"},
        "resourceVersion": "12",
    }
    assert body["spec"]["cpu"] == {"packagePowerCapWatts": 120.5}  # type: ignore[index]


def test_simulated_apply_converges_a_fresh_cluster_in_one_step() -> None:
    # Given a fresh cluster with an outsider
    nodes = [make_node("a"), make_node("b"), make_node("c", managed=False, labels={"k": "v"})]
    # When the writes are applied
    writes = run_core(nodes)
    new_nodes, new_npps = write.simulate_apply(writes, nodes=nodes, profiles=[])
    # Then the next tick writes nothing and the outsider is as it was
    assert run_core(new_nodes, profiles=new_npps).empty
    assert new_nodes[2] == nodes[2]
    assert {n.name for n in new_npps} == {"node-a", "node-b"}


def test_simulated_replace_bumps_the_resource_version() -> None:
    writes = run_core(CONVERGED_NODES, profiles=[CONVERGED_NPPS[0], make_npp("b", cap=1.0)])
    _, npps = write.simulate_apply(writes, nodes=CONVERGED_NODES, profiles=CONVERGED_NPPS)
    assert {n.name: n.resource_version for n in npps} == {"node-a": "7", "node-b": "8"}


def test_queue_aware_provenance_reaches_the_profile_objects() -> None:
    writes = run_core(
        CONVERGED_NODES, profiles=CONVERGED_NPPS, params=make_params(policy="queue_aware_v1")
    )
    assert {w.spec.policy_name for w in writes.profiles} == {"queue-aware-v1"}
    assert all(not w.create for w in writes.profiles)
    assert PERF_CAP in {w.spec.cap_watts for w in writes.profiles}


def test_a_postponed_decision_writes_nothing() -> None:
    from joulie_tasks.core import guard as guarding
    from joulie_tasks.core import plan as planning

    nodes = [make_node("a", profile="performance", draining="false")]
    planned = planning.make_plan(
        ["a"], demand=models.Demand(), params=models.PolicyParams(static_hp_frac=0.0), tick_time=0
    )
    guarded = guarding.apply_guard(
        planned,
        nodes=nodes,
        demand=models.Demand(),
        profile_label=PROFILE_LABEL,
        draining_label=DRAINING_LABEL,
        tick_time=0,
        performance_cap_watts=5000,
    )
    postponed = guarded.model_copy(
        update={
            "decisions": tuple(d.model_copy(update={"postponed": True}) for d in guarded.decisions)
        }
    )
    writes = write.desired_writes(
        postponed,
        nodes=nodes,
        profiles=(),
        profile_label=PROFILE_LABEL,
        draining_label=DRAINING_LABEL,
    )
    assert writes.empty


def test_the_profile_of_a_deleted_node_is_deleted_but_not_an_ineligible_ones() -> None:
    outsider = make_node("x-reserved", labels={"joulie.io/reserved": "true"})
    profiles = [
        *CONVERGED_NPPS,
        make_npp("gone"),
        make_npp("x-reserved", profile="eco", cap=1.0),
        make_npp("also-gone", name="node-foreign", managed_by="someone"),
    ]
    writes = run_core([*CONVERGED_NODES, outsider], profiles=profiles)
    assert writes.deletes == ("node-gone",)
    assert not writes.labels
    assert not writes.profiles


def test_a_superseded_duplicate_profile_is_deleted_when_the_name_changes() -> None:
    # gpu.a used to share its sanitised name with gpu-a and got a hashed object; with
    # gpu-a gone it owns the plain name, and the hashed object is a stale duplicate.
    hashed = make_npp("gpu.a", name="node-gpu-a-5cce7b4db2")
    writes = run_core([*CONVERGED_NODES, make_node("gpu.a")], profiles=[*CONVERGED_NPPS, hashed])
    assert writes.deletes == ("node-gpu-a-5cce7b4db2",)
    assert [w.name for w in writes.profiles if w.spec.node_name == "gpu.a"] == ["node-gpu-a"]


def test_an_object_reused_by_another_node_is_rewritten_not_deleted() -> None:
    # node-gpu-a still says gpu-a (deleted); gpu.a now owns that name: replace it.
    old = make_npp("gpu-a", name="node-gpu-a")
    writes = run_core([*CONVERGED_NODES, make_node("gpu.a")], profiles=[*CONVERGED_NPPS, old])
    assert writes.deletes == ()
    assert [(w.name, w.create) for w in writes.profiles if w.spec.node_name == "gpu.a"] == [
        ("node-gpu-a", False)
    ]


def test_an_empty_node_list_deletes_nothing() -> None:
    assert run_core([], profiles=CONVERGED_NPPS).deletes == ()
