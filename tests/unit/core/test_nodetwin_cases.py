"""The re-runnable cases of NODETWIN.md §9, ported to the pure core.

Each row keeps its contract id (``P3``, ``K11``, ``T19``…) as the test id. Rows where we
differ on purpose are asserted **our** way and carry a ``-differs`` id; docs/SPEC.md
§13.12 lists each with the reason. Covered here: G (guard), P/Q/U (policies with the
family floor), R (rule swap), D (density order and families), K (spec content and
caps), T (twin status formulas), E (NodeHardware enrichment). The classification rows
C1-C24, 25-30 and N1-N5 are in test_workload_class.py. M1-M6 (the Prometheus power
source) are not ported: we have no power source (docs/SPEC.md §13.4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from joulie_tasks import config
from joulie_tasks.core import (
    caps,
    decide,
    guard,
    hardware,
    models,
    order,
    plan,
    snapshot_parse,
    twin_status,
)
from tests.unit.builders import TICK, make_node, make_params, make_pod, perf_pod

PERF, ECO = models.Profile.PERFORMANCE, models.Profile.ECO


def approx(value: float) -> object:
    return pytest.approx(value, abs=1e-9)


# --- P, Q, U: the policies with NODE_ORDER=density's per-family floor -------------------


def given_order(families: Mapping[str, str]) -> order.Ranking:
    """A ranking that keeps the case's node order (densest = first given)."""
    names = list(families)
    return order.Ranking(
        density={models.NodeName(n): float(len(names) - i) for i, n in enumerate(names)},
        families={models.NodeName(n): f for n, f in families.items() if f},
    )


def same(*names: str, fam: str = "cpu:epyc-1") -> dict[str, str]:
    return dict.fromkeys(names, fam)


FIVE = ("node-a", "node-b", "node-c", "node-d", "node-e")
STATIC = models.PolicyName.STATIC_PARTITION
QUEUE = models.PolicyName.QUEUE_AWARE_V1


def queue(frac: float, low: int, high: int, per: int) -> dict[str, object]:
    return {
        "policy": QUEUE,
        "queue_hp_base_frac": frac,
        "queue_hp_min": low,
        "queue_hp_max": high,
        "queue_perf_per_hp_node": per,
    }


POLICY_CASES = [
    ("P1", same("a", "b", "c", "d"), {"static_hp_frac": 0.5}, 0, {"a", "b"}),
    (
        "P2",
        {"gpu1": "gpu:A100", "gpu2": "gpu:A100", "cpu1": "cpu:EPYC", "cpu2": "cpu:EPYC"},
        {"static_hp_frac": 0.25},
        0,
        {"gpu1", "cpu1"},
    ),
    (
        "P3",
        {"h100-a": "gpu:H100", "h100-b": "gpu:H100", "mi300x-a": "gpu:MI300X", "cpu-a": "cpu:x"},
        {"static_hp_frac": 0.25},
        0,
        {"h100-a", "mi300x-a", "cpu-a"},
    ),
    ("P4", same("only", fam="cpu:x"), {"static_hp_frac": 0.0}, 0, {"only"}),
    ("P5", same("a", "b"), {"static_hp_frac": -0.5}, 0, {"a"}),
    ("P6", same("a", "b"), {"static_hp_frac": 1.5}, 0, {"a", "b"}),
    ("P7", same(*FIVE), {"static_hp_frac": 0.6}, 0, {"node-a", "node-b", "node-c"}),
    ("P8-2.5-rounds-up", same(*FIVE), {"static_hp_frac": 0.5}, 0, set(FIVE[:3])),
    (
        "P9-no-hardware-map",
        same("a", "b", "c", fam=""),
        {"static_hp_frac": 0.0},
        0,
        {"a", "b", "c"},
    ),
    ("P10", same(*FIVE), {"static_hp_frac": 0.0}, 0, {"node-a"}),
    (
        "P11",
        {**same("g1", "g2", "g3", fam="gpu:H100"), **same("c1", "c2", fam="cpu:EPYC")},
        {"static_hp_frac": 0.6},
        0,
        {"g1", "g2", "c1"},
    ),
    (
        "P12",
        {**same("g1", "g2", "g3", fam="gpu:H100"), **same("c1", "c2", fam="cpu:EPYC")},
        {"static_hp_frac": 0.4},
        0,
        {"g1", "c1"},
    ),
    ("Q1", same(*"abcde"), queue(0.6, 1, 100, 10), 20, {"a", "b", "c"}),
    ("Q2", same(*"abcde"), queue(0.6, 1, 100, 10), 50, set("abcde")),
    ("Q3-P0", same(*FIVE), queue(0.6, 1, 5, 10), 0, set(FIVE[:3])),
    ("Q3-P40", same(*FIVE), queue(0.6, 1, 5, 10), 40, set(FIVE[:4])),
    ("Q4", same("node-a", "node-b", "node-c"), queue(0.34, 1, 3, 2), 2, {"node-a"}),
    (
        "Q5-floor-above-max",
        {"w7900-a": "gpu:W7900", "w7900-b": "gpu:W7900", "l40s-a": "gpu:L40S", "cpu-a": "cpu:x"},
        queue(0.10, 0, 2, 10),
        0,
        {"w7900-a", "l40s-a", "cpu-a"},
    ),
    ("Q6", same("a", "b"), queue(0.5, -1, -1, 0), 0, {"a"}),
    ("Q7", same(*FIVE), queue(0.0, 0, 1_000_000, 10), 0, {"node-a"}),
    ("Q8", same(*FIVE), queue(0.0, 4, 2, 10), 0, set(FIVE[:4])),
    ("Q9", same(*"abcd"), queue(0.0, 0, 1_000_000, 0), 3, {"a", "b", "c"}),
]


@pytest.mark.parametrize(
    ("families", "params", "perf_pods", "expected"),
    [c[1:] for c in POLICY_CASES],
    ids=[c[0] for c in POLICY_CASES],
)
def test_the_policies_with_the_family_floor(
    families: dict[str, str], params: dict[str, object], perf_pods: int, expected: set[str]
) -> None:
    result = plan.make_plan(
        [models.NodeName(n) for n in families],
        demand=models.Demand(performance_pods=perf_pods),
        params=make_params(**params),
        tick_time=TICK,
        order=given_order(families),
    )
    assert [a.node for a in result.assignments] == list(families)  # the given order kept
    assert {a.node for a in result.assignments if a.profile is PERF} == expected
    caps_by_profile = {a.profile: a.cap_watts for a in result.assignments}
    assert caps_by_profile.get(PERF, 5000.0) == 5000.0
    assert caps_by_profile.get(ECO, 120.0) == 120.0
    assert result.policy_name == (
        "queue-aware-v1" if params.get("policy") is QUEUE else "static-partition-v1"
    )


def test_u1_an_unknown_policy_falls_back_to_static() -> None:
    settings = config.read_settings({"POLICY_TYPE": "unknown_policy", "STATIC_HP_FRAC": "0.5"})
    result = plan.make_plan(
        [models.NodeName(n) for n in "abcd"],
        demand=models.Demand(),
        params=settings.policy_params(),
        tick_time=TICK,
        order=given_order(same(*"abcd")),
    )
    assert result.hp_count == 2
    assert result.policy_name == "static-partition-v1"


# --- R: rule_swap_v1 ignores the floor -------------------------------------------------

SWAP_CASES = [
    *[(f"R1-t{t}", ("a", "b"), 60.0, t, {"b"}) for t in (0, 59, 120)],
    *[(f"R2-t{t}", ("a", "b"), 60.0, t, {"a"}) for t in (60, 119, 180)],
    ("R3-t120", ("solo",), 60.0, 120, set()),
    ("R3-t180", ("solo",), 60.0, 180, {"solo"}),
    ("R4", ("a", "b", "c"), 60.0, 120, {"b", "c"}),
    # R5 differs: an interval under 1 s is 1 s here (docs/SPEC.md §5.5), 60 s there.
    ("R5-differs-500ms", ("a", "b"), 0.5, 60, {"b"}),
    ("R6", ("a", "b"), 1.9, 1, {"a"}),
]


@pytest.mark.parametrize(
    ("nodes", "interval", "t", "expected"),
    [c[1:] for c in SWAP_CASES],
    ids=[c[0] for c in SWAP_CASES],
)
def test_rule_swap(nodes: Sequence[str], interval: float, t: float, expected: set[str]) -> None:
    result = plan.make_plan(
        [models.NodeName(n) for n in nodes],
        demand=models.Demand(),
        params=make_params(policy=models.PolicyName.RULE_SWAP_V1, interval_seconds=interval),
        tick_time=t,
        order=given_order(same(*nodes)),
    )
    assert {a.node for a in result.assignments if a.profile is PERF} == expected
    assert all(a.cap_watts == (5000.0 if a.profile is PERF else 120.0) for a in result.assignments)


# --- D: density order and families from labels ------------------------------------------

EPYC = {"joulie.io/hw.cpu-model": "AMD EPYC 9654 96-Core Processor"}


def labelled(
    name: str, labels: Mapping[str, str], *, cores: int = 0, gpus: int = 0
) -> models.NodeInfo:
    node = make_node(name, labels=labels)
    return node.model_copy(update={"cpu_cores": cores, "gpus": gpus})


D_NODES = {
    "D3": labelled("d3", {**EPYC, "joulie.io/hw.cpu-sockets": "2"}, cores=192),
    "D4": labelled("d4", {**EPYC, "joulie.io/hw.cpu-sockets": "2"}),
    "D5": labelled("d5", EPYC),
    "D6": labelled(
        "d6",
        {
            "joulie.io/hw.cpu-model": "INTEL XEON GOLD 6530",
            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
        },
        cores=64,
        gpus=8,
    ),
    "D7": labelled("d7", {"joulie.io/hw.gpu-model": "L40S", "joulie.io/hw.gpu-count": "4"}),
    "D8": labelled("d8", {}, cores=32),
}

DENSITY_CASES = [
    ("D3", 710.4 * 192, 0.0, "cpu:AMD_EPYC_9654"),
    ("D4", 1420.8, 0.0, "cpu:AMD_EPYC_9654"),
    ("D5", 710.4, 0.0, "cpu:AMD_EPYC_9654"),
    ("D6", 16384.0, 5600.0, "gpu:NVIDIA_H100_SXM"),
    ("D7", 0.0, 1400.0, "gpu:NVIDIA_L40S"),
    ("D8", 0.0, 0.0, "cpu:unknown-cpu"),
]


@pytest.mark.parametrize(
    ("case", "cpu", "gpu", "fam"), DENSITY_CASES, ids=[c[0] for c in DENSITY_CASES]
)
def test_density_and_family_from_labels(case: str, cpu: float, gpu: float, fam: str) -> None:
    hw = hardware.enrich(hardware.from_labels(D_NODES[case]))
    assert order.cpu_density(hw) == approx(cpu)
    assert order.gpu_density(hw) == approx(gpu)
    assert order.family(hw) == fam


def test_d1_gpu_heavy_first_and_d2_ties_keep_name_order() -> None:
    d1 = order.Ranking(
        density={"cpu-node": 500.0, "gpu-node": 2700.0, "mixed-node": 1400.0}, families={}
    )
    assert d1.arrange(["cpu-node", "gpu-node", "mixed-node"]) == [
        "gpu-node",
        "mixed-node",
        "cpu-node",
    ]
    d2 = order.Ranking(density={"b": 5.0, "a": 5.0, "c": 0.0}, families={})
    assert d2.arrange(["b", "a", "c"]) == ["a", "b", "c"]


def test_d9_the_whole_order_and_floor_through_the_core() -> None:
    snap = models.Snapshot(tick_time=TICK, nodes=tuple(D_NODES.values()), pods=())
    settings = config.read_settings({"NODE_ORDER": "density", "STATIC_HP_FRAC": "0.5"})
    planned = decide.decide(snap, settings=settings).plan
    assert [a.node for a in planned.assignments] == ["d3", "d6", "d4", "d7", "d5", "d8"]
    assert {a.node for a in planned.assignments if a.profile is PERF} == {"d3", "d6", "d7", "d8"}


def test_the_default_order_is_by_name_without_a_floor() -> None:
    snap = models.Snapshot(tick_time=TICK, nodes=tuple(D_NODES.values()), pods=())
    planned = decide.decide(snap, settings=config.read_settings({"STATIC_HP_FRAC": "0"})).plan
    assert [a.node for a in planned.assignments] == ["d3", "d4", "d5", "d6", "d7", "d8"]
    assert planned.hp_count == 0


# --- G: the guard and the labels --------------------------------------------------------


def one_eco_node(pods: Sequence[models.PodInfo] | None) -> models.Decision:
    snap = models.Snapshot(
        tick_time=TICK, nodes=(make_node("a", profile="performance"),), pods=pods
    )
    settings = config.read_settings({"STATIC_HP_FRAC": "0"})
    return decide.decide(snap, settings=settings).guarded.decisions[0]


def test_g1_eco_with_performance_pods_drains() -> None:
    d = one_eco_node([perf_pod("p1", node="a"), perf_pod("p2", node="a")])
    assert (d.profile, d.draining, d.to_state) == (ECO, True, models.NodeState.DRAINING_PERFORMANCE)


def test_g2_eco_without_performance_pods_is_eco() -> None:
    d = one_eco_node([make_pod("idle", node="a")])
    assert (d.profile, d.draining, d.to_state) == (ECO, False, models.NodeState.ACTIVE_ECO)


def test_g3_performance_is_performance() -> None:
    snap = models.Snapshot(tick_time=TICK, nodes=(make_node("a"),), pods=None)
    d = decide.decide(snap, settings=config.read_settings({})).guarded.decisions[0]
    assert (d.profile, d.draining, d.to_state) == (PERF, False, models.NodeState.ACTIVE_PERFORMANCE)


def test_g4_differs_an_unknown_pod_count_holds_the_node_instead_of_eco() -> None:
    d = one_eco_node(None)
    assert d.held
    assert (d.profile, d.draining) == (PERF, False)


@pytest.mark.parametrize(
    ("profile", "draining", "state"),
    [
        (PERF, False, models.NodeState.ACTIVE_PERFORMANCE),
        (ECO, False, models.NodeState.ACTIVE_ECO),
        (ECO, True, models.NodeState.DRAINING_PERFORMANCE),
        # G6 differs: draining qualifies eco only; the guard never drains a performance node
        (PERF, True, models.NodeState.ACTIVE_PERFORMANCE),
    ],
    ids=["G6-perf", "G6-eco", "G6-eco-draining", "G6-differs-perf-draining"],
)
def test_g6_state_of(profile: models.Profile, draining: bool, state: models.NodeState) -> None:
    assert guard.state_of(profile, draining) is state


# --- K: spec content and caps -----------------------------------------------------------


def spec_of(
    node: models.NodeInfo,
    env: Mapping[str, str],
    *,
    perf: bool,
    records: Sequence[models.HardwareInfo] = (),
    pods: Sequence[models.PodInfo] = (),
) -> dict[str, object]:
    settings = config.read_settings(
        {"OUTPUT_API": "nodetwin", "STATIC_HP_FRAC": "1" if perf else "0", **env}
    )
    snap = models.Snapshot(tick_time=TICK, nodes=(node,), pods=tuple(pods), hardware=tuple(records))
    (write,) = decide.decide(snap, settings=settings).writes.twins
    return dict(write.spec or {})


ABSOLUTE = {"CPU_WRITE_ABSOLUTE_CAPS": "true"}
EPYC_2S = models.HardwareInfo(node_name="n", cpu_raw_model="AMD EPYC 9654", sockets=2)
EPYC_NS = models.HardwareInfo(node_name="n", cpu_raw_model="AMD EPYC 9654")
UNKNOWN_CPU = models.HardwareInfo(node_name="n", cpu_raw_model="Foo")
GPU4 = {"nvidia.com/gpu": "4"}

CPU_CASES = [
    ("K1", {}, True, (), {"packagePowerCapPctOfMax": 100}),
    ("K2", {}, False, (), {"packagePowerCapPctOfMax": 60}),
    # K4/K5 differ: the package cap is per package, 360 W and 55 % of it (§13.12)
    ("K4-differs-per-package", ABSOLUTE, True, (EPYC_2S,), {"packagePowerCapWatts": 360}),
    (
        "K5-differs-per-package",
        ABSOLUTE,
        False,
        (EPYC_2S,),
        {"packagePowerCapWatts": 198.00000000000003},
    ),
    ("K6-eco", ABSOLUTE, False, (EPYC_NS,), {"packagePowerCapWatts": 198.00000000000003}),
    ("K6-performance", ABSOLUTE, True, (EPYC_NS,), {"packagePowerCapWatts": 360}),
    ("K7", ABSOLUTE, False, (UNKNOWN_CPU,), {"packagePowerCapWatts": 120}),
]


@pytest.mark.parametrize(
    ("env", "perf", "records", "cpu"), [c[1:] for c in CPU_CASES], ids=[c[0] for c in CPU_CASES]
)
def test_the_cpu_cap_of_a_node_without_gpus(
    env: dict[str, str], perf: bool, records: tuple[models.HardwareInfo, ...], cpu: object
) -> None:
    spec = spec_of(make_node("n"), env, perf=perf, records=records)
    assert spec["cpu"] == cpu
    assert "gpu" not in spec  # K15


def test_k3_draining_spec() -> None:
    nodes = (make_node("a", profile="performance"), make_node("b", profile="performance"))
    settings = config.read_settings(
        {"OUTPUT_API": "nodetwin", "POLICY_TYPE": "queue_aware_v1", "QUEUE_HP_BASE_FRAC": "0"}
    )
    pods = (perf_pod("p", node="b"),)
    snap = models.Snapshot(tick_time=TICK, nodes=nodes, pods=pods)
    specs = {w.node: w.spec for w in decide.decide(snap, settings=settings).writes.twins}
    assert specs["b"] == {
        "nodeName": "b",
        "profile": "eco",
        "cpu": {"packagePowerCapPctOfMax": 60},
        "policy": {"name": "queue-aware-v1"},
        "scheduling": {"draining": True},
    }


def test_k8_a_zero_watts_cap_writes_no_cpu_cap_and_config_refuses_it() -> None:
    hw = hardware.enrich(UNKNOWN_CPU)
    assert caps.cpu_cap(ECO, watts=0.0, gpus=0, hw=hw, caps=caps.Caps(cpu_absolute=True)) == {}
    with pytest.raises(Exception, match="ECO_CAP_WATTS"):
        config.read_settings({"ECO_CAP_WATTS": "0"})


GPU_CASES = [
    # K9/K10/K16 differ on the CPU half only: GPU nodes get no CPU cap (D62)
    ("K9-differs-no-cpu-cap", GPU4, {}, False, {"scope": "perGpu", "capPctOfMax": 60}),
    ("K10-differs-no-cpu-cap", GPU4, {}, True, {"scope": "perGpu", "capPctOfMax": 100}),
    (
        "K11",
        {**GPU4, "joulie.io/hw.gpu-model": "NVIDIA-L40S"},
        {"GPU_WRITE_ABSOLUTE_CAPS": "true"},
        False,
        {"scope": "perGpu", "capPctOfMax": 60, "capWattsPerGpu": 210},
    ),
    (
        "K13",
        {**GPU4, "joulie.io/gpu.product": "NVIDIA-L40S"},
        {},
        False,
        {"scope": "perGpu", "capPctOfMax": 60},
    ),
    (
        "K14",
        {"amd.com/gpu": "2", "amd.com/gpu.product": "Unknown"},
        {"GPU_WRITE_ABSOLUTE_CAPS": "true"},
        True,
        {"scope": "perGpu", "capPctOfMax": 100},
    ),
    (
        "K16-differs-no-cpu-cap",
        {"nvidia.com/gpu": "1"},
        {"GPU_ECO_CAP_PCT_OF_MAX": "0"},
        False,
        None,
    ),
]


@pytest.mark.parametrize(
    ("labels", "env", "perf", "power_cap"),
    [c[1:] for c in GPU_CASES],
    ids=[c[0] for c in GPU_CASES],
)
def test_the_gpu_intent(
    labels: dict[str, str], env: dict[str, str], perf: bool, power_cap: object
) -> None:
    allocatable = {k: v for k, v in labels.items() if k.endswith("/gpu")}
    node = labelled("n", {k: v for k, v in labels.items() if k not in allocatable})
    node = node.model_copy(update={"gpus": snapshot_parse.gpu_count(allocatable)})
    spec = spec_of(node, env, perf=perf)
    assert spec["cpu"] == {}
    assert spec.get("gpu") == (None if power_cap is None else {"powerCap": power_cap})


L40S_JSON = {"NVIDIA-L40S": caps.GpuModelCap(min_cap_watts=200, max_cap_watts=350)}


@pytest.mark.parametrize(
    ("pct", "model_caps", "expected"),
    [
        (60.0, L40S_JSON, {"scope": "perGpu", "capPctOfMax": 60, "capWattsPerGpu": 210}),
        (
            0.1,
            {"NVIDIA-L40S": caps.GpuModelCap(max_cap_watts=300)},
            {"scope": "perGpu", "capPctOfMax": 0.1, "capWattsPerGpu": 1},
        ),
    ],
    ids=["K12", "K17-minimum-defaults-to-1"],
)
def test_gpu_model_caps_json_by_product_label(
    pct: float, model_caps: Mapping[str, caps.GpuModelCap], expected: object
) -> None:
    settings = caps.Caps(gpu={PERF: 100.0, ECO: pct}, gpu_absolute=True, gpu_model_caps=model_caps)
    labels = {"joulie.io/gpu.product": "NVIDIA-L40S"}
    assert caps.gpu_cap(ECO, gpus=8, hw=None, labels=labels, caps=settings) == expected


def test_k18_a_known_gpu_range_raises_to_its_minimum() -> None:
    record = models.HardwareInfo(node_name="n", gpu_count=4, gpu_min_w=100, gpu_max_w=300)
    settings = caps.Caps(gpu={PERF: 100.0, ECO: 20.0}, gpu_absolute=True)
    found = caps.gpu_cap(ECO, gpus=4, hw=hardware.enrich(record), labels={}, caps=settings)
    assert found == {"scope": "perGpu", "capPctOfMax": 20, "capWattsPerGpu": 100}


def test_k19_differs_bad_gpu_model_caps_json_stops_start_up() -> None:
    with pytest.raises(Exception, match="GPU_MODEL_CAPS_JSON"):
        config.read_settings({"GPU_MODEL_CAPS_JSON": "{"})


@pytest.mark.parametrize(
    ("allocatable", "count"),
    [
        ({"vendor.example/gpu": "3"}, 3),
        (
            {
                "nvidia.com/gpu": "4",
                "amd.com/gpu": "2",
                "gpu.intel.com/i915": "1",
                "example.com/gpu-mem": "5",
            },
            7,
        ),
    ],
    ids=["K20", "K21"],
)
def test_allocatable_gpus(allocatable: dict[str, str], count: int) -> None:
    assert snapshot_parse.gpu_count(allocatable) == count


def test_k22_one_object_per_node_eco_then_performance() -> None:
    node = make_node("node-a")
    first = spec_of(node, {}, perf=False)
    second = spec_of(node, {}, perf=True)
    assert (first["profile"], second["profile"]) == ("eco", "performance")


def test_k23_rule_swap_two_twins_and_labels() -> None:
    settings = config.read_settings({"OUTPUT_API": "nodetwin", "POLICY_TYPE": "rule_swap_v1"})
    snap = models.Snapshot(tick_time=0, nodes=(make_node("a"), make_node("b")), pods=())
    writes = decide.decide(snap, settings=settings).writes
    assert sorted(w.name for w in writes.twins) == ["a", "b"]
    profiles = sorted(w.labels["joulie.io/power-profile"] for w in writes.labels)
    assert profiles == ["eco", "performance"]
    # differs: the draining label is written in every mode (D57)
    assert all(w.labels["joulie.io/draining"] == "false" for w in writes.labels)


def test_k24_a_node_labelled_as_decided_gets_no_label_write() -> None:
    node = make_node("a", profile="eco", draining="false")
    settings = config.read_settings({"OUTPUT_API": "nodetwin", "STATIC_HP_FRAC": "0"})
    snap = models.Snapshot(tick_time=TICK, nodes=(node,), pods=())
    assert decide.decide(snap, settings=settings).writes.labels == ()


def test_k25_differs_a_draining_node_carries_the_draining_label() -> None:
    settings = config.read_settings({"OUTPUT_API": "nodetwin", "STATIC_HP_FRAC": "0"})
    snap = models.Snapshot(tick_time=TICK, nodes=(make_node("a"),), pods=(perf_pod(node="a"),))
    (labels,) = decide.decide(snap, settings=settings).writes.labels
    assert labels.labels == {"joulie.io/power-profile": "eco", "joulie.io/draining": "true"}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("TRUE", True),
        (" true ", True),
        ("1", True),
        ("yes", True),
        ("YES", True),
        ("0", False),
        ("false", False),
        # differ: every boolean of ours reads on/t as true (the reference: false)
        ("on", True),
        ("t", True),
    ],
    ids=lambda v: repr(v) if isinstance(v, str) else None,
)
def test_k26_booleans(text: str, value: bool) -> None:
    assert config.read_settings({"CPU_WRITE_ABSOLUTE_CAPS": text}).cpu_write_absolute_caps is value


# --- T: the twin status formulas --------------------------------------------------------


def hw(
    *,
    cpu_w: float = 0,
    sockets: int = 0,
    cores: int = 0,
    gpu_w: float = 0,
    gpus: int = 0,
    present: bool = False,
) -> hardware.Hardware:
    return hardware.Hardware(
        cpu_max_w_per_socket=cpu_w,
        sockets=sockets,
        total_cores=cores,
        gpu_max_w=gpu_w,
        gpu_count=gpus,
        gpu_present=present,
    )


def status(
    h: hardware.Hardware,
    *,
    profile: str = "eco",
    draining: bool = False,
    cpu: float = 60,
    gpu: float = 60,
    **conditions: float,
) -> dict[str, object]:
    return twin_status.compute(
        h,
        profile=profile,
        draining=draining,
        cpu_pct=cpu,
        gpu_pct=gpu,
        conditions=twin_status.Conditions(**conditions),
    )


def power(s: Mapping[str, object]) -> Mapping[str, object]:
    found = s["powerMeasurement"]
    assert isinstance(found, dict)
    return found


BIG = hw(cpu_w=360, sockets=2, cores=192, gpu_w=400, gpus=8, present=True)


def test_t1_budgets_scores_and_trend() -> None:
    s = status(
        hw(cpu_w=350, sockets=2, gpu_w=700, gpus=8, present=True),
        gpu=40,
        measured_w=1500,
        trend_w_per_min=-120,
    )
    p = power(s)
    assert (p["cpuTdpW"], p["gpuTdpW"], p["nodeTdpW"]) == (700, 5600, 6300)
    assert (p["cpuCappedPowerW"], p["gpuCappedPowerW"], p["nodeCappedPowerW"]) == (420, 2240, 2660)
    assert s["predictedPowerHeadroomScore"] == approx(43.6090225564)
    assert s["predictedCoolingStressScore"] == approx(23.8095238095)
    assert s["estimatedPUE"] == approx(1.1333333333)
    assert s["hardwareDensityScore"] == 50
    assert p["powerTrendWPerMin"] == -120


def test_t2_and_e8_no_hardware() -> None:
    view = hardware.twin_view([models.NodeName("n")], records=())
    s = status(view[models.NodeName("n")])
    assert s["schedulableClass"] == "eco"
    assert (s["predictedPowerHeadroomScore"], s["predictedCoolingStressScore"]) == (100, 0)
    assert (s["hardwareDensityScore"], s["estimatedPUE"]) == (0, 1.05)
    assert set(power(s).values()) == {"static", 0}


def test_t3_headroom_goes_negative_over_budget() -> None:
    s = status(hw(cpu_w=200, sockets=1), cpu=50, measured_w=150)
    assert power(s)["nodeCappedPowerW"] == 100
    assert (s["predictedPowerHeadroomScore"], s["predictedCoolingStressScore"]) == (-50, 75)


def test_t4_headroom_is_100_without_measurement() -> None:
    assert (
        status(hw(cpu_w=350, sockets=2), profile="performance", cpu=100)[
            "predictedPowerHeadroomScore"
        ]
        == 100
    )


@pytest.mark.parametrize(
    ("cpu_w", "measured", "ambient", "cooling"),
    [
        (350, 350, 20, 50),
        (350, 350, 0, 50),
        (350, 350, -5, 50),
        (350, 350, 45, 100),
        (350, 350, 18, 48.0769230769),
        (350, 350, 30, 62.5),
        (350, 350, 35, 71.4285714286),
        (360, 300, 18, 40.0641025641),
        (360, 300, 35, 59.5238095238),
    ],
    ids=[
        "T5-20C",
        "T5-unknown",
        "T5-below-zero",
        "T6-45C",
        "T7-18C",
        "T7-30C",
        "T7-35C",
        "T8-18C",
        "T8-35C",
    ],
)
def test_cooling_stress_by_ambient(
    cpu_w: float, measured: float, ambient: float, cooling: float
) -> None:
    s = status(hw(cpu_w=cpu_w, sockets=2), measured_w=measured, ambient_c=ambient)
    assert s["predictedCoolingStressScore"] == approx(cooling)


@pytest.mark.parametrize(
    ("profile", "draining", "cls"),
    [("performance", True, "draining"), ("bogus", False, "unknown"), ("", False, "unknown")],
    ids=["T9", "T10-bogus", "T10-empty"],
)
def test_schedulable_class(profile: str, draining: bool, cls: str) -> None:
    assert twin_status.schedulable_class(profile, draining=draining) == cls


@pytest.mark.parametrize(
    ("cpu", "gpu", "expected"),
    [(0, 0, {"cpuPct": 100, "gpuPct": 100}), (-10, 60, {"cpuPct": 100, "gpuPct": 60})],
    ids=["T11-zero", "T11-negative"],
)
def test_t11_caps_of_zero_or_less_count_as_full(cpu: float, gpu: float, expected: object) -> None:
    assert status(hw(), cpu=cpu, gpu=gpu)["effectiveCapState"] == expected


@pytest.mark.parametrize(
    ("cluster", "rack", "psu"),
    [(30_000, 0, 60), (40_000, 10_000, 20), (40_000, 0, 80), (1e9, 0, 100)],
    ids=["T12", "T13-rack-wins", "T13-cluster-alone", "T14"],
)
def test_psu_stress(cluster: float, rack: float, psu: float) -> None:
    s = status(hw(), facility_it_power_w=cluster, rack_power_w=rack)
    assert s["predictedPsuStressScore"] == psu


@pytest.mark.parametrize(
    ("h", "density"),
    [
        (hw(cores=192, gpus=8, present=True), 100),
        (hw(cores=64), 33.3333333333),
        (hw(cores=64, gpus=4, gpu_w=400), 33.3333333333),
    ],
    ids=["T15", "T16", "T17-not-present"],
)
def test_hardware_density_score(h: hardware.Hardware, density: float) -> None:
    s = status(h)
    assert s["hardwareDensityScore"] == approx(density)
    if not h.gpu_present:
        assert power(s)["gpuTdpW"] == 0


def test_t18_big_node_eco() -> None:
    s = status(BIG)
    p = power(s)
    assert (p["cpuCappedPowerW"], p["gpuCappedPowerW"], p["nodeCappedPowerW"]) == (432, 1920, 2352)
    assert p["nodeTdpW"] == 3920
    assert (s["predictedPowerHeadroomScore"], s["predictedCoolingStressScore"]) == (100, 0)
    assert s["hardwareDensityScore"] == 100


def test_t19_big_node_performance_warm() -> None:
    s = status(BIG, profile="performance", cpu=100, gpu=100, measured_w=2000, ambient_c=30)
    assert s["predictedPowerHeadroomScore"] == approx(48.9795918367)
    assert s["predictedCoolingStressScore"] == approx(63.7755102041)
    assert s["estimatedPUE"] == approx(1.2732142857)


def test_t20_gpu_only() -> None:
    s = status(hw(gpu_w=400, gpus=4, present=True), cpu=100, measured_w=500)
    assert power(s)["gpuCappedPowerW"] == 960
    assert s["predictedPowerHeadroomScore"] == approx(47.9166666667)
    assert s["predictedCoolingStressScore"] == 31.25
    assert s["hardwareDensityScore"] == 25


# --- E: NodeHardware enrichment, then the status at eco 60/60 ---------------------------

ENRICH_CASES = [
    (
        "E1",
        models.HardwareInfo(node_name="n", total_cores=32, sockets=1, cpu_raw_model="Foo"),
        160,
        96,
        0,
    ),
    ("E2", models.HardwareInfo(node_name="n", total_cores=192, sockets=2), 960, 576, 0),
    ("E3", models.HardwareInfo(node_name="n", total_cores=64), 320, 192, 0),
    (
        "E4",
        models.HardwareInfo(
            node_name="n",
            cpu_model="AMD_EPYC_9654",
            sockets=2,
            total_cores=192,
            gpu_count=8,
            gpu_model="NVIDIA_H100_NVL",
        ),
        720,
        432,
        3200,
    ),
    # E5 differs: a recognised CPU with unknown sockets counts one socket (there: TDP 0)
    (
        "E5-differs-one-socket",
        models.HardwareInfo(
            node_name="n", cpu_raw_model="AMD EPYC 9654 96-Core Processor", total_cores=192
        ),
        360,
        216,
        0,
    ),
    (
        "E6",
        models.HardwareInfo(node_name="n", cpu_raw_model="INTEL(R) XEON(R) GOLD 6530", sockets=2),
        540,
        324,
        0,
    ),
    ("E7", models.HardwareInfo(node_name="n", gpu_count=4, gpu_raw_model="Unknown"), 0, 0, 0),
]


@pytest.mark.parametrize(
    ("record", "cpu_tdp", "cpu_capped", "gpu_tdp"),
    [c[1:] for c in ENRICH_CASES],
    ids=[c[0] for c in ENRICH_CASES],
)
def test_enrichment_then_status(
    record: models.HardwareInfo, cpu_tdp: float, cpu_capped: float, gpu_tdp: float
) -> None:
    p = power(status(hardware.enrich(record)))
    assert (p["cpuTdpW"], p["cpuCappedPowerW"], p["gpuTdpW"]) == (
        cpu_tdp,
        approx(cpu_capped),
        gpu_tdp,
    )


def test_e1_e4_details() -> None:
    e1 = status(hardware.enrich(ENRICH_CASES[0][1]))
    assert e1["hardwareDensityScore"] == 16.666666666666664
    e4 = hardware.enrich(ENRICH_CASES[3][1])
    assert (e4.cpu_min_w_per_socket, e4.gpu_min_w, e4.gpu_present) == (320, 200, True)
    p = power(status(e4))
    assert (p["nodeCappedPowerW"], p["nodeTdpW"]) == (2352, 3920)
    e6 = hardware.enrich(ENRICH_CASES[5][1])
    assert e6.cpu_min_w_per_socket == 0


def test_a_node_with_dots_finds_its_hardware_by_spec_node_name() -> None:
    """§10.1's second half: the reference looks NodeHardware up by the raw node name,
    the agent names it with the sanitised one; we key on spec.nodeName."""
    manifest = {
        "metadata": {"name": "ip-10-0-0-1-ec2-internal"},
        "spec": {"nodeName": "ip-10-0-0-1.ec2.internal"},
        "status": {"cpu": {"sockets": 2, "totalCores": 64, "capRange": {"maxWattsPerSocket": 400}}},
    }
    record = hardware.hardware_info_from_manifest(manifest)
    assert record is not None
    node = models.NodeName("ip-10-0-0-1.ec2.internal")
    view = hardware.twin_view([node], records=[record])
    # an integer 400 is read like 400.0 (§10.4)
    assert view[node].cpu_tdp_w == 800
