"""The cache's reduction of objects (cache.py) and the eco-write selection (cache_tick.py)."""

from __future__ import annotations

from typing import Any

import pytest

from joulie_tasks import config
from joulie_tasks.core import cache, classify, models, selectors, snapshot_parse
from joulie_tasks.ports import metrics
from joulie_tasks.workflow import cache_tick, lifecycle
from joulie_testbed.emulator import seed as seeding
from tests.fakes import FakeKube, MemoryStateStore


def _pod(
    shape: str, node: str | None = "n1", phase: str = "Running", **meta: Any
) -> dict[str, Any]:
    pod = seeding.make_pod("p", namespace="ns", shape=shape, node=node, phase=phase)
    pod["metadata"].update(meta)
    return pod


@pytest.mark.parametrize("shape", sorted(seeding.SHAPES))
@pytest.mark.parametrize("node", [None, "n1"])
@pytest.mark.parametrize("phase", ["Pending", "Running", "Succeeded", "Failed"])
def test_a_pods_code_agrees_with_the_list_path(shape: str, node: str | None, phase: str) -> None:
    raw = _pod(shape, node, phase)
    code = cache.pod_contribution(raw)
    info = snapshot_parse.pod_info_from_manifest(raw)
    assert info is not None
    kept = info.node_selector_profile is not None or bool(info.requirements)
    demand = classify.summarise_demand((info,) if kept else ())
    counts, by_node = cache.counts_of([code])
    assert cache.demand_from_counts(counts, by_node) == demand


def test_codes_name_class_and_node() -> None:
    assert cache.pod_contribution(_pod("selector-performance")) == "P|n1"
    assert cache.pod_contribution(_pod("selector-performance", None, "Pending")) == "P|"
    assert cache.pod_contribution(_pod("selector-eco")) == "E"
    assert cache.pod_contribution(_pod("selector-unknown")) == "G"
    assert cache.pod_contribution(_pod("none")) == ""
    assert cache.pod_contribution(_pod("selector-performance", phase="Succeeded")) == ""
    deleting = _pod("selector-performance", deletionTimestamp="2026-01-01T00:00:00Z")
    assert cache.pod_contribution(deleting) == ""
    assert cache.pod_contribution({"spec": "broken"}) == ""


def test_counts_of_codes() -> None:
    counts, by_node = cache.counts_of(["P|a", "P|a", "P|b", "P|", "E", "G", ""])
    assert counts == {"performance": 4, "eco": 1, "general": 1, "pending_performance": 1}
    assert by_node == {"a": 2, "b": 1}


def test_demand_drops_zero_counts_and_sorts_nodes() -> None:
    demand = cache.demand_from_counts({"performance": 2}, {"b": 1, "a": 1, "c": 0})
    assert demand.performance_pods == 2
    assert list(demand.performance_pods_by_node) == ["a", "b"]


def test_nodes_keep_only_the_labels_of_interest_and_no_version() -> None:
    keys = cache.interest_keys(
        selectors.parse_selector("joulie.io/managed=true,zone in (a,b)"),
        reserved_label_key="r",
        profile_label="p",
        draining_label="d",
    )
    assert keys == {"joulie.io/managed", "zone", "r", "p", "d"}
    node = seeding.make_node("n", labels={"zone": "a", "p": "eco", "noise": "x"})
    node["metadata"]["resourceVersion"] = "7"
    record = cache.node_record(node, keys)
    assert record is not None
    assert record.labels == {"zone": "a", "p": "eco"}
    assert record.resource_version is None
    assert cache.node_record({"metadata": {}}, keys) is None


def test_snapshot_is_in_name_order() -> None:
    snap = cache.snapshot_from_records(
        tick_time=1.0,
        nodes=[models.NodeInfo(name=models.NodeName(n)) for n in ("b", "a")],
        profiles=[models.NppInfo(name=models.NppName(n)) for n in ("y", "x")],
    )
    assert [n.name for n in snap.nodes] == ["a", "b"]
    assert [p.name for p in snap.profiles] == ["x", "y"]
    assert snap.pods == ()


def _npp(node: str, profile: models.Profile) -> models.NppWrite:
    spec = models.NppSpec(
        node_name=models.NodeName(node), profile=profile, cap_watts=1, policy_name="x"
    )
    return models.NppWrite(name=models.NppName(node), spec=spec, create=True)


def _labels(node: str, profile: str, draining: str) -> models.LabelWrite:
    return models.LabelWrite(node=models.NodeName(node), labels={"p": profile, "d": draining})


def test_writes_towards_eco_are_confirmed_draining_ones_are_not() -> None:
    batch = models.WriteSet(
        labels=(
            _labels("down", "eco", "false"),
            _labels("drain", "eco", "true"),
            _labels("up", "performance", "false"),
        ),
        profiles=(
            _npp("down", models.Profile.ECO),
            _npp("drain", models.Profile.ECO),
            _npp("npp-only", models.Profile.ECO),
            _npp("up", models.Profile.PERFORMANCE),
        ),
    )
    assert cache_tick.towards_eco(batch, profile_label="p", draining_label="d") == {
        "down",
        "npp-only",
    }


def _twin(node: str, profile: str, *, draining: bool = False) -> models.TwinWrite:
    spec = {"nodeName": node, "profile": profile, "scheduling": {"draining": draining}}
    return models.TwinWrite(name=node, node=models.NodeName(node), create=True, spec=spec)


def test_an_eco_twin_spec_is_confirmed_even_alone_a_draining_one_or_a_status_is_not() -> None:
    # A twin written alone happens: recreated after a delete, or NodeTwin output switched
    # on for a node whose labels are eco already. The agent caps at once on that spec.
    status_only = models.TwinWrite(
        name="status", node=models.NodeName("status"), create=False, status={"x": 1}
    )
    batch = models.WriteSet(
        twins=(
            _twin("eco", "eco"),
            _twin("drain", "eco", draining=True),
            _twin("up", "performance"),
            status_only,
        )
    )
    assert cache_tick.towards_eco(batch, profile_label="p", draining_label="d") == {"eco"}


def test_a_twin_record_is_what_a_list_fed_tick_reads_and_snapshots_keep_name_order() -> None:
    raw = {
        "metadata": {"name": "b", "resourceVersion": "9", "labels": {"joulie.io/managed-by": "x"}},
        "spec": {"nodeName": "B", "profile": "eco"},
        "status": {"schedulableClass": "eco"},
    }
    record = cache.twin_record(raw)
    assert record == snapshot_parse.twin_info_from_manifest(raw)
    assert record is not None
    assert record.resource_version == "9"
    assert cache.twin_record({"metadata": {}}) is None
    other = models.TwinInfo(name="a")
    snap = cache.snapshot_from_records(tick_time=1.0, nodes=[], profiles=[], twins=[record, other])
    assert [t.name for t in snap.twins] == ["a", "b"]


def test_an_eco_twin_is_not_written_over_a_performance_pod_the_fresh_list_shows() -> None:
    # The cache missed the pod on "busy": the plan writes its twin eco. The fresh pod
    # list by spec.nodeName finds it, so that twin is dropped this tick; "idle" is kept.
    fake, state = FakeKube(), MemoryStateStore()
    pod = _pod("selector-performance", "busy")
    fake.add("pods", pod)
    batch = models.WriteSet(twins=(_twin("busy", "eco"), _twin("idle", "eco")))
    ref = lifecycle.TickRef(tick_id="t", token=1, tick_time=1.0, started_at=1.0)
    settings = config.read_settings({"OUTPUT_API": "nodetwin"})

    kept, stopped = cache_tick.confirm(
        batch, ref=ref, gateway=fake, state=state, cache=None, settings=settings
    )

    assert [w.node for w in kept.twins] == ["idle"]
    assert list(stopped) == ["busy"]
    assert "1 performance pod(s)" in stopped["busy"]
    counters, _ = state.read_metric_values()
    assert counters[metrics.field(metrics.DOWNGRADES_STOPPED)] == 1
    assert counters[metrics.field(metrics.CONFIRMATIONS)] == 2
