"""The NodeTwin writer's pure half (docs/SPEC.md §13; NODETWIN.md §3.3 and §9.4).

Covers the spec per state (K1 to K3 of NODETWIN.md §9.4), the status we compute, one
object name for spec and status (a node name with dots), a converged tick writing
nothing, the status refresh, deletes, and OUTPUT_API choosing the writers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from joulie_tasks import config
from joulie_tasks.core import decide, models, snapshot_parse, twin
from tests.unit.builders import TICK, make_node, make_npp, perf_pod

NODETWIN = {"OUTPUT_API": "nodetwin"}


def tick(
    nodes: Sequence[models.NodeInfo],
    *,
    twins: Sequence[models.TwinInfo] = (),
    pods: Sequence[models.PodInfo] = (),
    env: Mapping[str, str] = NODETWIN,
    tick_time: float = TICK,
    profiles: Sequence[models.NppInfo] = (),
) -> models.WriteSet:
    snap = models.Snapshot(
        tick_time=tick_time,
        nodes=tuple(nodes),
        pods=tuple(pods),
        twins=tuple(twins),
        profiles=tuple(profiles),
    )
    return decide.decide(snap, settings=config.read_settings(dict(env))).writes


def as_read(writes: models.WriteSet, *, version: str = "1") -> list[models.TwinInfo]:
    """The twins as the API would return them after ``writes`` (first tick: creates)."""
    return [
        models.TwinInfo(
            name=w.name,
            resource_version=version,
            node_name=w.node,
            managed_by=models.MANAGED_BY_VALUE,
            spec=dict(w.spec or {}),
            status={**(w.status or {}), "controlStatus": {"cpu": {"result": "applied"}}},
        )
        for w in writes.twins
    ]


FOUR = [make_node(n) for n in ("a", "b", "c", "d")]  # static 0.5: a, b performance


# K1 to K3 of NODETWIN.md §9.4, plus the planned-eco-with-perf-pods (draining) row of §3.3.
SPEC_CASES = [
    pytest.param(
        {},
        "a",
        {
            "nodeName": "a",
            "profile": "performance",
            "cpu": {"packagePowerCapPctOfMax": 100},
            "policy": {"name": "static-partition-v1"},
            "scheduling": {"draining": False},
        },
        "performance",
        id="K1-performance",
    ),
    pytest.param(
        {},
        "c",
        {
            "nodeName": "c",
            "profile": "eco",
            "cpu": {"packagePowerCapPctOfMax": 60},
            "policy": {"name": "static-partition-v1"},
            "scheduling": {"draining": False},
        },
        "eco",
        id="K2-eco",
    ),
    pytest.param(
        {},
        "d",
        {
            "nodeName": "d",
            "profile": "eco",
            "cpu": {"packagePowerCapPctOfMax": 60},
            "policy": {"name": "static-partition-v1"},
            "scheduling": {"draining": True},
        },
        "draining",
        id="draining-static",
    ),
    pytest.param(
        {"POLICY_TYPE": "queue_aware_v1", "QUEUE_HP_BASE_FRAC": "0.5", "QUEUE_HP_MAX": "2"},
        "d",
        {
            "nodeName": "d",
            "profile": "eco",
            "cpu": {"packagePowerCapPctOfMax": 60},
            "policy": {"name": "queue-aware-v1"},
            "scheduling": {"draining": True},
        },
        "draining",
        id="K3-draining-queue-aware",
    ),
]


@pytest.mark.parametrize(("env", "node", "spec", "klass"), SPEC_CASES)
def test_the_spec_and_class_of_each_state(
    env: Mapping[str, str], node: str, spec: dict[str, object], klass: str
) -> None:
    writes = tick(FOUR, pods=[perf_pod(node="d")], env={**NODETWIN, **env})
    (found,) = [w for w in writes.twins if w.node == node]
    assert found.create
    assert found.name == node
    assert found.spec == spec
    assert "gpu" not in (found.spec or {})  # no allocatable GPU, no GPU intent (K15)
    assert found.status is not None
    assert found.status["schedulableClass"] == klass
    assert found.status["lastUpdated"] == "2023-11-14T22:13:20Z"
    cap = spec["cpu"]["packagePowerCapPctOfMax"]  # type: ignore[index]
    assert found.status["effectiveCapState"] == {"cpuPct": cap, "gpuPct": 100}


def test_the_status_is_the_references_figures_without_hardware_or_power_source() -> None:
    (found, *_) = tick(FOUR).twins
    assert found.status is not None
    assert {k: v for k, v in found.status.items() if k != "lastUpdated"} == {
        "schedulableClass": "performance",
        "predictedPowerHeadroomScore": 100,
        "predictedCoolingStressScore": 0,
        "predictedPsuStressScore": 0,
        "hardwareDensityScore": 0,
        "estimatedPUE": 1.05,
        "effectiveCapState": {"cpuPct": 100, "gpuPct": 100},
        "powerMeasurement": {
            "source": "static",
            "measuredNodePowerW": 0,
            "cpuCappedPowerW": 0,
            "gpuCappedPowerW": 0,
            "nodeCappedPowerW": 0,
            "cpuTdpW": 0,
            "gpuTdpW": 0,
            "nodeTdpW": 0,
            "powerTrendWPerMin": 0,
        },
    }


def test_a_node_name_with_dots_gets_spec_and_status_on_one_object() -> None:
    # Reference bug NODETWIN.md §10.1: status went to the raw name and never arrived.
    writes = tick([make_node("ip-10-0-0-1.ec2.internal")])
    (found,) = writes.twins
    assert found.name == "ip-10-0-0-1-ec2-internal"
    assert found.spec is not None
    assert found.status is not None
    assert found.spec["nodeName"] == "ip-10-0-0-1.ec2.internal"
    manifest = twin.twin_manifest(found)
    assert manifest["metadata"] == {
        "name": "ip-10-0-0-1-ec2-internal",
        "labels": {"joulie.io/managed-by": "operator"},
    }
    assert "status" not in manifest


def test_nodes_that_sanitise_alike_get_distinct_twins() -> None:
    # Reference bug NODETWIN.md §10.11: two such nodes fought over one object.
    writes = tick([make_node("gpu.a"), make_node("gpu-a")])
    names = {w.node: w.name for w in writes.twins}
    assert names["gpu-a"] == "gpu-a"
    assert names["gpu.a"].startswith("gpu-a-")
    assert len(set(names.values())) == 2


def test_a_converged_tick_writes_no_twin() -> None:
    first = tick(FOUR)
    later = tick(FOUR, twins=as_read(first), tick_time=TICK + 60)
    assert later.twins == ()
    assert later.twin_deletes == ()


def test_an_unchanged_status_is_refreshed_before_the_extender_finds_it_stale() -> None:
    first = tick(FOUR)
    later = tick(FOUR, twins=as_read(first), tick_time=TICK + twin.STATUS_REFRESH_S)
    assert [(w.name, w.spec, w.create) for w in later.twins] == [
        (n, None, False) for n in ("a", "b", "c", "d")
    ]
    assert all(w.status is not None for w in later.twins)
    assert all(w.resource_version == "1" for w in later.twins)


def test_a_profile_change_rewrites_spec_and_status_and_keeps_the_agents_status() -> None:
    first = tick(FOUR)
    # d now carries a performance pod: c stays eco, d turns draining.
    later = tick(FOUR, twins=as_read(first), pods=[perf_pod(node="d")], tick_time=TICK + 1)
    (found,) = later.twins
    assert found.node == "d"
    assert found.spec is not None
    assert found.status is not None
    assert found.spec["scheduling"] == {"draining": True}
    assert "controlStatus" not in found.status  # a merge patch leaves the agent's key alone


def test_a_hand_edited_spec_is_restored() -> None:
    read = as_read(tick(FOUR))
    edited = read[0].model_copy(update={"spec": {**read[0].spec, "profile": "eco"}})
    later = tick(FOUR, twins=[edited, *read[1:]], tick_time=TICK + 1)
    assert [(w.name, w.status) for w in later.twins] == [("a", None)]


def test_twins_of_deleted_and_unmanaged_nodes_are_deleted_but_never_foreign_ones() -> None:
    read = as_read(tick(FOUR))
    foreign = models.TwinInfo(name="x", node_name="x", spec={"nodeName": "x"})
    nodes = [make_node("a"), make_node("b"), make_node("c", managed=False)]  # d deleted
    later = tick(nodes, twins=[*read, foreign], tick_time=TICK + 1)
    assert later.twin_deletes == ("c", "d")


def test_nothing_is_deleted_when_no_node_is_managed() -> None:
    read = as_read(tick(FOUR))
    later = tick([make_node("a", managed=False)], twins=read, tick_time=TICK + 1)
    assert later.twin_deletes == ()
    assert later.twins == ()


def test_a_twin_we_did_not_create_is_taken_over_not_duplicated() -> None:
    # A cluster that ran the reference operator: same name, no owner label.
    theirs = [t.model_copy(update={"managed_by": None, "status": {}}) for t in as_read(tick(FOUR))]
    later = tick(FOUR, twins=theirs, tick_time=TICK + 1)
    assert [(w.name, w.create, w.spec is not None) for w in later.twins] == [
        (n, False, True) for n in ("a", "b", "c", "d")
    ]


@pytest.mark.parametrize(
    ("mode", "profiles", "twins"),
    [("nodepowerprofile", 4, 0), ("nodetwin", 0, 4), ("both", 4, 4)],
)
def test_output_api_chooses_the_writers_and_labels_are_written_in_every_mode(
    mode: str, profiles: int, twins: int
) -> None:
    gone = make_npp("gone")  # a deleted node's profile: deleted only where profiles are written
    writes = tick(FOUR, env={"OUTPUT_API": mode}, profiles=[gone])
    assert (len(writes.profiles), len(writes.twins), len(writes.labels)) == (profiles, twins, 4)
    assert writes.deletes == (("node-gone",) if profiles else ())


def test_the_default_mode_is_the_profile_writer_unchanged() -> None:
    default = tick(FOUR, env={})
    explicit = tick(FOUR, env={"OUTPUT_API": "nodepowerprofile"})
    assert default == explicit
    assert default.twins == ()
    assert default.twin_deletes == ()


def test_the_cap_percentages_come_from_the_settings() -> None:
    env = {**NODETWIN, "CPU_PERFORMANCE_CAP_PCT_OF_MAX": "90", "CPU_ECO_CAP_PCT_OF_MAX": "42.5"}
    caps = {w.node: (w.spec or {}).get("cpu") for w in tick(FOUR, env=env).twins}
    assert caps == {
        "a": {"packagePowerCapPctOfMax": 90},
        "b": {"packagePowerCapPctOfMax": 90},
        "c": {"packagePowerCapPctOfMax": 42.5},
        "d": {"packagePowerCapPctOfMax": 42.5},
    }


def gpu_node(name: str, allocatable: dict[str, object]) -> models.NodeInfo:
    raw = {
        "metadata": {"name": name, "labels": {"joulie.io/managed": "true"}},
        "status": {"allocatable": allocatable},
    }
    node = snapshot_parse.node_info_from_manifest(raw)
    assert node is not None
    return node


@pytest.mark.parametrize(
    ("allocatable", "count"),
    [
        ({"nvidia.com/gpu": "4"}, 4),
        ({"vendor.example/gpu": "3"}, 3),  # K20: any */gpu
        (
            {
                "nvidia.com/gpu": "4",
                "amd.com/gpu": "2",
                "gpu.intel.com/i915": "1",
                "example.com/gpu-mem": "5",
                "cpu": "64",
            },
            7,
        ),  # K21
        ({"NVIDIA.com/GPU": "2"}, 2),
        ({"nvidia.com/gpu": "1500m"}, 0),
        ({}, 0),
    ],
    ids=["nvidia", "K20-custom-suffix", "K21-mixed", "case", "not-whole", "none"],
)
def test_allocatable_gpus_are_counted_like_the_reference(
    allocatable: dict[str, object], count: int
) -> None:
    assert gpu_node("g", allocatable).gpus == count


# K9, K10, K16 of NODETWIN.md §9.4. We differ on the CPU part on purpose: the reference
# writes packagePowerCapWatts 120 / 5000 on GPU nodes, against its own stated intent
# (GPU nodes get no CPU cap, NODETWIN.md §10.2); we write `cpu: {}`.
GPU_CASES = [
    pytest.param(
        {},
        "g2",
        {"cpu": {}, "gpu": {"powerCap": {"scope": "perGpu", "capPctOfMax": 60}}},
        {"cpuPct": 100, "gpuPct": 60},
        id="K9-eco-DIFFERS-no-cpu-watts",
    ),
    pytest.param(
        {},
        "g1",
        {"cpu": {}, "gpu": {"powerCap": {"scope": "perGpu", "capPctOfMax": 100}}},
        {"cpuPct": 100, "gpuPct": 100},
        id="K10-performance-DIFFERS-no-cpu-watts",
    ),
    pytest.param(
        {"GPU_ECO_CAP_PCT_OF_MAX": "0"},
        "g2",
        {"cpu": {}},
        {"cpuPct": 100, "gpuPct": 100},
        id="K16-gpu-pct-0-no-intent",
    ),
    pytest.param(
        {"GPU_ECO_CAP_PCT_OF_MAX": "40"},
        "g2",
        {"cpu": {}, "gpu": {"powerCap": {"scope": "perGpu", "capPctOfMax": 40}}},
        {"cpuPct": 100, "gpuPct": 40},
        id="gpu-eco-40",
    ),
]


@pytest.mark.parametrize(("env", "node", "caps", "effective"), GPU_CASES)
def test_gpu_nodes_get_a_per_gpu_intent_and_no_cpu_cap(
    env: Mapping[str, str],
    node: str,
    caps: dict[str, object],
    effective: dict[str, object],
) -> None:
    nodes = [gpu_node("g1", {"nvidia.com/gpu": "4"}), gpu_node("g2", {"nvidia.com/gpu": "4"})]
    (found,) = [w for w in tick(nodes, env={**NODETWIN, **env}).twins if w.node == node]
    assert found.spec is not None
    assert found.status is not None
    assert {k: v for k, v in found.spec.items() if k in ("cpu", "gpu")} == caps
    assert found.status["effectiveCapState"] == effective


def test_the_first_managed_status_to_fall_due_bounds_a_quiet_tick() -> None:
    def found(
        name: str, stamp: object, managed_by: str | None = models.MANAGED_BY_VALUE
    ) -> models.TwinInfo:
        return models.TwinInfo(
            name=name, managed_by=managed_by, status={} if stamp is None else {"lastUpdated": stamp}
        )

    written = twin.rfc3339(TICK)
    assert twin.status_due([]) is None
    assert twin.status_due([found("a", written)]) == int(TICK) + twin.STATUS_REFRESH_S
    # a foreign twin is not ours to refresh; one without a readable stamp is due now
    assert twin.status_due([found("a", written), found("b", None, managed_by="someone")]) == (
        int(TICK) + twin.STATUS_REFRESH_S
    )
    assert twin.status_due([found("a", written), found("c", "yesterday")]) == 0.0
