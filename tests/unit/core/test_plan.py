"""Policies: docs/SPEC.md §5 examples, Go rounding, every queue-aware clamp, the rule-swap
phases, and the assembled plan (order, caps, provenance)."""

from __future__ import annotations

import pytest

from joulie_tasks.core import models, plan
from tests.unit.builders import ECO_CAP, PERF_CAP, TICK, make_params

P = models.Profile.PERFORMANCE
E = models.Profile.ECO


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        (2.5, 3),
        (-2.5, -3),
        (0.5, 1),
        (-0.5, -1),
        (1.5, 2),
        (2.4999999999999996, 2),
        (0.49999999999999994, 0),
        (-0.49999999999999994, 0),
        (0.0, 0),
        (-0.0, 0),
        (3.0, 3),
        (4503599627370497.0, 4503599627370497),
        (1e20, 10**20),
    ],
    ids=repr,
)
def test_rounding_is_half_away_from_zero_like_go(x: float, expected: int) -> None:
    assert plan.round_half_away(x) == expected


@pytest.mark.parametrize(
    ("nodes", "frac", "expected"),
    [
        (5, 0.5, 3),
        (1, 0.5, 1),
        (4, 0.5, 2),
        (3, 0.5, 2),
        (0, 0.5, 0),
        (10, 0.0, 0),
        (10, 1.0, 10),
        (10, -0.3, 0),
        (10, 1.7, 10),
        (7, 0.3, 2),
    ],
    ids=lambda v: str(v),
)
def test_static_partition_rounds_n_times_the_clamped_fraction(
    nodes: int, frac: float, expected: int
) -> None:
    assert plan.static_partition(nodes, hp_frac=frac) == expected


def queue(
    nodes: int,
    pods: int,
    *,
    base: float = 0.6,
    low: int = 1,
    high: int = 1_000_000,
    per_node: int = 10,
) -> int:
    return plan.queue_aware_v1(
        nodes,
        performance_pods=pods,
        base_frac=base,
        hp_min=low,
        hp_max=high,
        perf_per_node=per_node,
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # docs/SPEC.md §5 examples.
        ({"nodes": 5, "pods": 0, "high": 5}, 3),
        ({"nodes": 5, "pods": 40, "high": 5}, 4),
        ({"nodes": 3, "pods": 2, "base": 0.34, "high": 3, "per_node": 2}, 1),
        # need = ceil(P / per_node)
        ({"nodes": 10, "pods": 41, "base": 0.0}, 5),
        ({"nodes": 10, "pods": 40, "base": 0.0}, 4),
        # clamps
        ({"nodes": 5, "pods": 0, "base": 0.0, "low": -3}, 0),
        ({"nodes": 5, "pods": 0, "base": 0.0, "low": 2}, 2),
        ({"nodes": 5, "pods": 100, "high": 0}, 5),
        ({"nodes": 5, "pods": 100, "high": -1}, 5),
        ({"nodes": 5, "pods": 100, "high": 2}, 2),
        ({"nodes": 5, "pods": 100, "low": 3, "high": 2}, 3),
        ({"nodes": 5, "pods": 0, "base": 0.0, "low": 9}, 5),
        ({"nodes": 5, "pods": 1000}, 5),
        ({"nodes": 0, "pods": 50}, 0),
        ({"nodes": 5, "pods": 0, "base": 1.5}, 5),
        ({"nodes": 5, "pods": 0, "base": -1.0, "low": 0}, 0),
        # per-node ≤ 0 means 1
        ({"nodes": 10, "pods": 4, "base": 0.0, "per_node": 0}, 4),
        ({"nodes": 10, "pods": 4, "base": 0.0, "per_node": -5}, 4),
        # rounding at .5: 5 * 0.5 = 2.5 → 3
        ({"nodes": 5, "pods": 0, "base": 0.5}, 3),
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) if isinstance(kw, dict) else "",
)
def test_queue_aware_takes_the_larger_of_baseline_and_need_then_clamps(
    kwargs: dict[str, float], expected: int
) -> None:
    assert queue(**kwargs) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("count", "tick_time", "interval", "expected"),
    [
        (2, 120, 60, (E, P)),
        (2, 180, 60, (P, E)),
        (2, 179.9, 60, (E, P)),
        (3, 60, 60, (P, E, P)),
        (4, 0, 60, (E, P, P, P)),
        (1, 120, 60, (E,)),
        (1, 180, 60, (P,)),
        (0, 120, 60, ()),
        (2, 7, 0.4, (P, E)),
        (2, 8, 0.4, (E, P)),
        (2, 121, 1.9, (P, E)),
    ],
    ids=lambda v: str(v),
)
def test_rule_swap_alternates_the_eco_node_each_interval(
    count: int, tick_time: float, interval: float, expected: tuple[models.Profile, ...]
) -> None:
    assert plan.rule_swap_v1(count, tick_time=tick_time, interval_seconds=interval) == expected


NODES = [models.NodeName(n) for n in ("c", "a", "b", "e", "d")]


def test_a_plan_gives_the_first_nodes_in_byte_order_performance_with_the_right_caps() -> None:
    result = plan.make_plan(NODES, demand=models.Demand(), params=make_params(), tick_time=TICK)
    assert result.policy_name == "static-partition-v1"
    assert result.hp_count == 3
    assert [(a.node, a.profile, a.cap_watts) for a in result.assignments] == [
        ("a", P, PERF_CAP),
        ("b", P, PERF_CAP),
        ("c", P, PERF_CAP),
        ("d", E, ECO_CAP),
        ("e", E, ECO_CAP),
    ]


def test_queue_aware_plans_use_cluster_wide_performance_demand() -> None:
    params = make_params(policy="queue_aware_v1", queue_hp_max=5)
    busy = models.Demand(performance_pods=40)
    result = plan.make_plan(NODES, demand=busy, params=params, tick_time=TICK)
    assert result.policy_name == "queue-aware-v1"
    assert result.hp_count == 4
    assert [a.profile for a in result.assignments] == [P, P, P, P, E]


def test_rule_swap_plans_follow_the_tick_time() -> None:
    params = make_params(policy="rule_swap_v1", interval_seconds=60.0, eco_cap_watts=99.0)
    nodes = [models.NodeName("b"), models.NodeName("a")]
    at_120 = plan.make_plan(nodes, demand=models.Demand(), params=params, tick_time=120.0)
    at_180 = plan.make_plan(nodes, demand=models.Demand(), params=params, tick_time=180.0)
    assert at_120.policy_name == "rule-swap-v1"
    assert [(a.node, a.profile, a.cap_watts) for a in at_120.assignments] == [
        ("a", E, 99.0),
        ("b", P, PERF_CAP),
    ]
    assert [(a.node, a.profile) for a in at_180.assignments] == [("a", P), ("b", E)]
    assert at_120.hp_count == at_180.hp_count == 1


def test_zero_nodes_give_an_empty_plan_under_every_policy() -> None:
    for policy in models.PolicyName:
        result = plan.make_plan(
            [],
            demand=models.Demand(performance_pods=9),
            params=make_params(policy=policy),
            tick_time=TICK,
        )
        assert (result.hp_count, result.assignments) == (0, ())


def test_a_plan_ignores_unknown_demand_counts() -> None:
    params = make_params(policy="queue_aware_v1")
    result = plan.make_plan(NODES, demand=models.Demand(known=False), params=params, tick_time=TICK)
    assert result.hp_count == 3
