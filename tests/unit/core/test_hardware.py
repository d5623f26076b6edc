"""NodeHardware parsing, the label fallback, catalog matching and the caps built on them
(docs/SPEC.md §13.10, §13.11): the edges the contract's cases do not reach.

Covers: malformed NodeHardware fields count as absent; whole and fractional numbers
alike; a record without spec.nodeName is dropped; catalog matching by key and alias
spellings; the label fallback (first non-blank label, bad sockets, GPU count label over
allocatable); a NodeHardware wins over labels; a measured RAPL range bounds the CPU
watts; CPU capacity quantities; the family floor never exceeds N.
"""

from __future__ import annotations

import pytest

from joulie_tasks.core import caps, catalog, hardware, models, order, snapshot_parse
from tests.unit.builders import make_node


def test_a_record_without_a_node_name_is_dropped() -> None:
    assert hardware.hardware_info_from_manifest({"spec": {}}) is None
    assert hardware.hardware_info_from_manifest({"spec": {"nodeName": ""}}) is None


def test_malformed_fields_count_as_absent_and_numbers_are_read_alike() -> None:
    record = hardware.hardware_info_from_manifest(
        {
            "metadata": {"name": "n"},
            "spec": {"nodeName": "n"},
            "status": {
                "cpu": {
                    "sockets": "2",
                    "totalCores": 1.5,
                    "model": 7,
                    "capRange": {"maxWattsPerSocket": 400, "minWattsPerSocket": True},
                },
                "gpu": {"present": "yes", "count": 4.0, "capRangePerGpu": {"maxWatts": 350.5}},
            },
        }
    )
    assert record == models.HardwareInfo(
        node_name="n", name="n", cpu_max_w_per_socket=400.0, gpu_count=4, gpu_max_w=350.5
    )


@pytest.mark.parametrize(
    "text",
    [
        "INTEL(R) XEON(R) GOLD 6530",
        "Intel-Xeon-Gold-6530",
        "INTEL_XEON_GOLD_6530",
        " xeon gold 6530 ",
    ],
)
def test_catalog_matching_normalises_both_sides(text: str) -> None:
    found = catalog.match_cpu(text)
    assert found is not None
    assert found.key == "INTEL_XEON_GOLD_6530"


@pytest.mark.parametrize("text", ["", "  ", "Xeon", "NVIDIA-L40S"])
def test_unknown_or_empty_models_never_match_a_cpu(text: str) -> None:
    assert catalog.match_cpu(text) is None


def test_the_label_fallback() -> None:
    node = make_node(
        "n",
        labels={
            "joulie.io/hw.cpu-model": " ",
            "feature.node.kubernetes.io/cpu-model.name": "AMD EPYC 9654",
            "joulie.io/hw.cpu-sockets": "two",
            "joulie.io/hw.gpu-count": "2",
            "amd.com/gpu.product": "MI300X",
        },
    ).model_copy(update={"cpu_cores": 96, "gpus": 8})
    record = hardware.from_labels(node)
    assert (record.cpu_raw_model, record.sockets, record.total_cores) == ("AMD EPYC 9654", 0, 96)
    assert (record.gpu_raw_model, record.gpu_count) == ("MI300X", 2)
    hw = hardware.enrich(record)
    assert order.family(hw) == "gpu:AMD_INSTINCT_MI300X"


def test_a_nodehardware_wins_over_the_labels_and_the_twin_never_uses_labels() -> None:
    node = make_node("n", labels={"joulie.io/hw.cpu-model": "AMD-EPYC-9654"})
    record = models.HardwareInfo(node_name="n", cpu_raw_model="AMD EPYC 9965", sockets=1)
    planner = hardware.planner_view([node], records=[record])
    matched = planner[node.name].cpu
    assert matched is not None
    assert matched.key == "AMD_EPYC_9965"
    assert hardware.planner_view([node], records=[])[node.name].cpu_model == "AMD_EPYC_9654"
    assert hardware.twin_view([node.name], records=[]) == {node.name: hardware.NO_HARDWARE}


@pytest.mark.parametrize(
    ("watts", "expected"), [(120.0, 250), (300.0, 300), (5000.0, 380)], ids=["up", "in", "down"]
)
def test_a_measured_rapl_range_bounds_the_cpu_watts(watts: float, expected: int) -> None:
    record = models.HardwareInfo(
        node_name="n",
        cpu_raw_model="AMD EPYC 9654",  # the catalog would say [198, 360]
        cpu_min_w_per_socket=250,
        cpu_max_w_per_socket=380,
    )
    settings = caps.Caps(cpu_absolute=True)
    found = caps.cpu_cap(
        models.Profile.ECO, watts=watts, gpus=0, hw=hardware.enrich(record), caps=settings
    )
    assert found == {"packagePowerCapWatts": expected}


@pytest.mark.parametrize(
    ("quantity", "cores"),
    [("32", 32), (64, 64), ("96500m", 97), ("500m", 1), ("", 0), ("2Ki", 0), (None, 0), ("-1", 0)],
)
def test_cpu_capacity_in_whole_cores(quantity: object, cores: int) -> None:
    assert snapshot_parse.cpu_cores(quantity) == cores


def test_the_family_floor_never_exceeds_the_node_count() -> None:
    ranking = order.Ranking(density={}, families={})  # every node its own family
    nodes = [models.NodeName(n) for n in ("a", "b")]
    profiles = order.with_family_floor(nodes, hp_count=0, ranking=ranking)
    assert profiles == (models.Profile.PERFORMANCE, models.Profile.PERFORMANCE)
    assert order.with_family_floor([], hp_count=3, ranking=ranking) == ()


def test_memoised_status_figures_are_never_shared_between_nodes() -> None:
    from joulie_tasks.core import twin

    decision = models.Decision(
        node=models.NodeName("a"),
        planned=models.Profile.ECO,
        profile=models.Profile.ECO,
        draining=False,
        cap_watts=120.0,
        policy_name="static-partition-v1",
        performance_pods=0,
        from_state=models.NodeState.ACTIVE_ECO,
        to_state=models.NodeState.ACTIVE_ECO,
    )
    spec = {"cpu": {"packagePowerCapPctOfMax": 60}}
    first = twin.twin_status_of(decision, spec=spec, tick_time=1.0)
    second = twin.twin_status_of(decision, spec=spec, tick_time=2.0)
    assert first["powerMeasurement"] == second["powerMeasurement"]
    first["powerMeasurement"]["cpuTdpW"] = 999  # type: ignore[index]
    assert second["powerMeasurement"]["cpuTdpW"] == 0  # type: ignore[index]
    assert first["lastUpdated"] != second["lastUpdated"]
