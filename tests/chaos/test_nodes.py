"""Nodes changing under the operator: deleted mid-tick (404 → skipped and logged; the
deleted node's NodePowerProfile is removed), a profile or label edited by hand
(restored by the next tick), a node becoming reserved or unmanaged (left alone
from then on: its labels and profile are never written again).
"""

from __future__ import annotations

from joulie_tasks.adapters import store
from joulie_testbed.emulator import Emulator
from joulie_testbed.procs import wait_for
from tests.chaos.scenario import Chaos, Scenario

PROFILE = "joulie.io/power-profile"
DRAINING = "joulie.io/draining"


def test_a_node_deleted_mid_tick(chaos: Chaos, emulator: Emulator, state: store.RedisStore) -> None:
    # Given a converged cluster where two nodes' labels were edited by hand
    drive = chaos.start(
        Scenario(
            seed=61, nodes=8, pods_per_node=0, settings={"write_concurrency": "1"}, converged=True
        )
    )
    worker = chaos.worker
    for node in ("node-00006", "node-00007"):
        emulator.mutate_node_labels(node, {PROFILE: "weird"})
    assert emulator.get_object("nodepowerprofiles", "node-node-00007") is not None

    # When node-00007 is deleted while the tick writes node-00006 (after its snapshot)
    emulator.inject("PATCH", r"^/api/v1/nodes/node-00006$", delay_s=1)
    emulator.reset_counters()
    at, before = drive.send()
    wait_for(lambda: emulator.counters().get(("patch", "nodes")), what="the first patch")
    assert emulator.delete_object("nodes", "node-00007")
    first = drive.outcome(at, before)

    # Then its write is skipped and logged (not a failed tick), Redis forgets it, and
    # the next tick deletes its profile object
    assert first == "completed"
    assert "node-00007: skipped" in worker.log()
    assert "node-00007" not in state.fsm()
    n = drive.converge(max_ticks=3)
    found = chaos.problems()
    chaos.row.fill(
        drive,
        found,
        fault="node deleted mid-tick",
        action="node deleted between the tick's snapshot and its label PATCH",
        behaviour=(
            "PATCH answered 404: node skipped and logged, tick completed (not failed), FSM "
            "forgot it; the next tick deleted its NodePowerProfile (managed-by=operator, "
            "spec.nodeName gone)"
        ),
    )
    assert emulator.get_object("nodepowerprofiles", "node-node-00007") is None
    assert n <= 3
    assert found == []


def test_a_profile_and_a_label_edited_by_hand(chaos: Chaos, emulator: Emulator) -> None:
    drive = chaos.start(Scenario(seed=62, pods_per_node=0, converged=True))

    # When someone edits a profile object's spec and another node's labels by hand
    npp = emulator.get_object("nodepowerprofiles", "node-node-00000")
    assert npp is not None
    npp["spec"]["cpu"]["packagePowerCapWatts"] = 1
    npp["spec"]["profile"] = "eco"
    emulator.put_object(npp)
    emulator.mutate_node_labels("node-00004", {DRAINING: "true", "team": "blue"})

    # Then the next tick restores both, and leaves the foreign label alone
    n = drive.converge(max_ticks=1)
    found = chaos.problems()
    chaos.row.fill(
        drive,
        found,
        fault="NodePowerProfile and node label edited by hand",
        action="a profile's cap and profile changed; a node's draining label flipped "
        "(plus a foreign label added)",
        behaviour="next tick replaced the profile (current resourceVersion) and re-patched "
        "the two operator labels; the foreign label was kept",
    )
    assert emulator.get_node("node-00004")["metadata"]["labels"]["team"] == "blue"
    assert n == 1
    assert found == []


def test_a_node_becoming_reserved_or_unmanaged_is_left_alone(
    chaos: Chaos, emulator: Emulator
) -> None:
    drive = chaos.start(Scenario(seed=63, pods_per_node=0, converged=True))

    # When one node becomes reserved and another leaves the selector, then both get
    # their operator labels and profile objects edited by hand
    emulator.mutate_node_labels("node-00000", {"joulie.io/reserved": "true"})
    emulator.mutate_node_labels("node-00001", {"joulie.io/managed": None})
    drive.converge(max_ticks=1)
    for node in ("node-00000", "node-00001"):
        emulator.mutate_node_labels(node, {PROFILE: "hand-set", DRAINING: "maybe"})
        npp = emulator.get_object("nodepowerprofiles", f"node-{node}")
        assert npp is not None
        npp["spec"]["cpu"]["packagePowerCapWatts"] = 7
        emulator.put_object(npp)
    left = {
        node: (
            emulator.get_node(node)["metadata"]["resourceVersion"],
            emulator.get_object("nodepowerprofiles", f"node-{node}"),
        )
        for node in ("node-00000", "node-00001")
    }

    # And a still-managed node's label is edited by hand too (the next tick must restore it)
    managed = "node-00002"
    restored = emulator.get_node(managed)["metadata"]["labels"][PROFILE]
    emulator.mutate_node_labels(managed, {PROFILE: "hand-set"})
    edited = emulator.get_node(managed)["metadata"]["resourceVersion"]

    # Then the next tick completes and restores the managed node's label (it did write),
    # a later one completes too, neither writes the two excluded nodes, and Redis does
    # not track them
    assert drive.one() == "completed", drive.outcomes
    managed_after = emulator.get_node(managed)["metadata"]
    assert managed_after["labels"][PROFILE] == restored
    assert managed_after["resourceVersion"] != edited
    assert drive.one() == "completed", drive.outcomes
    found = chaos.problems()
    for node, (version, npp) in left.items():
        if emulator.get_node(node)["metadata"]["resourceVersion"] != version:
            found.append(f"{node} was written")
        if emulator.get_object("nodepowerprofiles", f"node-{node}") != npp:
            found.append(f"the profile of {node} was written or deleted")
    chaos.row.fill(
        drive,
        found,
        fault="node becomes reserved / unmanaged",
        action="one node labelled joulie.io/reserved=true, one taken out of NODE_SELECTOR; "
        "then their operator labels and profiles edited by hand, and so was a managed "
        "node's profile label",
        behaviour="both dropped from the plan and from the FSM; the next two ticks "
        "completed and restored the managed node's label, but never wrote or deleted the "
        "two nodes' labels or profile objects again (resourceVersions unchanged)",
    )
    assert found == []
