"""Stage 4: the policies that choose each eligible node's profile (docs/SPEC.md §5).

A plan is a pure function of (eligible node names, demand, policy parameters, tick
time): no clock, no environment, no I/O. Rounding is half away from zero, as Go's
``math.Round``; Python's ``round`` rounds half to even and would plan 2 performance
nodes instead of 3 for N=5, frac=0.5. The unknown-policy fallback happens in
config.py, so :class:`models.PolicyName` here is always one of the three policies.

:data:`POLICIES` is the one registry of policies: name → its parameter model (the
``PolicyParams`` fields it reads) → the function that assigns profiles → the
provenance written as ``policy_name``. ``make_plan`` looks the policy up there and
has no per-policy branch; the defaults live once, in ``models.PolicyParams`` (config.py
takes them from there), and each policy reads only its own model's fields.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from joulie_tasks.core import models
from joulie_tasks.core import order as ordering

STATIC_PARTITION = "static-partition-v1"
QUEUE_AWARE = "queue-aware-v1"
RULE_SWAP = "rule-swap-v1"

_Num = TypeVar("_Num", int, float)


def round_half_away(x: float) -> int:
    """Round to the nearest integer, halves away from zero (Go's ``math.Round``).

    Exact for every finite float: ``x - trunc(x)`` is computed without error, unlike
    ``floor(x + 0.5)``, which turns 0.49999999999999994 into 1.
    """
    whole = math.trunc(x)
    if abs(x - whole) >= 0.5:
        whole += 1 if x > 0 else -1
    return whole


def static_partition(node_count: int, *, hp_frac: float) -> int:
    """``round(N * clamp(frac, 0, 1))`` performance nodes, within ``[0, N]``."""
    return _clamp(round_half_away(node_count * _clamp(hp_frac, 0.0, 1.0)), 0, node_count)


def queue_aware_v1(
    node_count: int,
    *,
    performance_pods: int,
    base_frac: float,
    hp_min: int,
    hp_max: int,
    perf_per_node: int,
) -> int:
    """``max(baseline, ceil(P / per-node))`` performance nodes, clamped as docs/SPEC.md §5 says.

    A negative minimum is 0; a maximum ≤ 0 means N and one below the minimum is
    raised to it; the result is then clamped to ``[0, N]``. ``perf_per_node`` ≤ 0
    counts as 1.
    """
    base = round_half_away(node_count * _clamp(base_frac, 0.0, 1.0))
    per_node = perf_per_node if perf_per_node > 0 else 1
    need = -(-max(performance_pods, 0) // per_node)  # integer ceil, no float error
    low = max(hp_min, 0)
    high = hp_max if hp_max > 0 else node_count
    high = max(high, low)
    return _clamp(_clamp(max(base, need), low, high), 0, node_count)


def rule_swap_v1(
    node_count: int, *, tick_time: float, interval_seconds: float
) -> tuple[models.Profile, ...]:
    """The debug swap: one node eco, alternating between node 0 and node 1 each interval.

    ``phase = floor(floor(t) / interval) mod 2`` with the interval in whole seconds,
    at least 1. Phase 0 puts node 0 in eco, phase 1 node 1; a single node is eco
    on phase 0 and performance on phase 1.
    """
    interval = max(int(interval_seconds), 1)
    phase = (math.floor(tick_time) // interval) % 2
    profiles = [models.Profile.PERFORMANCE] * node_count
    if phase < node_count:
        profiles[phase] = models.Profile.ECO
    return tuple(profiles)


Profiles = tuple[models.Profile, ...]
_P = TypeVar("_P", bound=models.Frozen)


class StaticPartitionParams(models.Frozen):
    """static_partition's parameter (STATIC_HP_FRAC)."""

    static_hp_frac: float


class QueueAwareParams(models.Frozen):
    """queue_aware_v1's parameters (QUEUE_HP_BASE_FRAC, QUEUE_HP_MIN, QUEUE_HP_MAX,
    QUEUE_PERF_PER_HP_NODE)."""

    queue_hp_base_frac: float
    queue_hp_min: int
    queue_hp_max: int
    queue_perf_per_hp_node: int


class RuleSwapParams(models.Frozen):
    """rule_swap_v1's parameter (RECONCILE_INTERVAL, the swap's period)."""

    interval_seconds: float


#: How a policy assigns profiles: (eligible node count, demand, parameters, tick time)
#: → one profile per node, in the nodes' byte order.
Assign = Callable[[int, models.Demand, models.PolicyParams, float], Profiles]


@dataclass(frozen=True)
class Policy:
    """One planning policy (docs/SPEC.md §5): its POLICY_TYPE name, its parameter model
    (the SPEC §3 variables it reads; their defaults live once, in ``PolicyParams``),
    its assignment and its provenance."""

    name: models.PolicyName
    params: type[models.Frozen]
    assign: Assign
    provenance: str
    #: Whether the policy chooses a count of performance nodes, which NODE_ORDER=density
    #: raises to one per hardware family (order.py); rule_swap_v1's pattern is not one.
    counts: bool = True


def _policy(
    name: models.PolicyName,
    params: type[_P],
    assign: Callable[[int, models.Demand, _P, float], Profiles],
    provenance: str,
    *,
    counts: bool = True,
) -> Policy:
    """Register ``assign``, which reads only its own parameter model."""

    def run(
        count: int, demand: models.Demand, all_params: models.PolicyParams, t: float
    ) -> Profiles:
        own = params.model_validate({f: getattr(all_params, f) for f in params.model_fields})
        return assign(count, demand, own, t)

    return Policy(name, params, run, provenance, counts)


def _first_in_performance(hp_count: int, count: int) -> Profiles:
    """The first ``hp_count`` nodes in performance, the rest eco."""
    return (models.Profile.PERFORMANCE,) * hp_count + (models.Profile.ECO,) * (count - hp_count)


def _assign_static(
    count: int, _demand: models.Demand, params: StaticPartitionParams, _t: float
) -> Profiles:
    return _first_in_performance(static_partition(count, hp_frac=params.static_hp_frac), count)


def _assign_queue_aware(
    count: int, demand: models.Demand, params: QueueAwareParams, _t: float
) -> Profiles:
    hp_count = queue_aware_v1(
        count,
        performance_pods=demand.performance_pods,
        base_frac=params.queue_hp_base_frac,
        hp_min=params.queue_hp_min,
        hp_max=params.queue_hp_max,
        perf_per_node=params.queue_perf_per_hp_node,
    )
    return _first_in_performance(hp_count, count)


def _assign_rule_swap(
    count: int, _demand: models.Demand, params: RuleSwapParams, tick_time: float
) -> Profiles:
    return rule_swap_v1(count, tick_time=tick_time, interval_seconds=params.interval_seconds)


#: Every policy, by name: the one place a new policy is registered.
POLICIES: Mapping[models.PolicyName, Policy] = {
    p.name: p
    for p in (
        _policy(
            models.PolicyName.STATIC_PARTITION,
            StaticPartitionParams,
            _assign_static,
            STATIC_PARTITION,
        ),
        _policy(
            models.PolicyName.QUEUE_AWARE_V1,
            QueueAwareParams,
            _assign_queue_aware,
            QUEUE_AWARE,
        ),
        _policy(
            models.PolicyName.RULE_SWAP_V1,
            RuleSwapParams,
            _assign_rule_swap,
            RULE_SWAP,
            counts=False,
        ),
    )
}


def make_plan(
    nodes: Sequence[models.NodeName],
    *,
    demand: models.Demand,
    params: models.PolicyParams,
    tick_time: float,
    order: ordering.Ranking | None = None,
) -> models.Plan:
    """Assign each eligible node its profile and cap with the configured policy.

    ``nodes`` are the eligible names; they are (re)sorted by byte order so the plan
    does not depend on the caller's order. Every policy but rule_swap_v1 puts the
    first ``hp_count`` in performance; rule_swap_v1's pattern is not a prefix.
    With ``order`` (NODE_ORDER=density) the nodes go densest first and a counting
    policy keeps one performance node per hardware family (order.py).
    """
    ordered = sorted(nodes, key=lambda n: n.encode("utf-8", "surrogatepass"))
    if order is not None:
        ordered = order.arrange(ordered)
    policy = POLICIES[params.policy]
    profiles = policy.assign(len(ordered), demand, params, tick_time)
    if order is not None and policy.counts:
        hp_count = profiles.count(models.Profile.PERFORMANCE)
        profiles = ordering.with_family_floor(ordered, hp_count=hp_count, ranking=order)
    caps = {
        models.Profile.PERFORMANCE: params.performance_cap_watts,
        models.Profile.ECO: params.eco_cap_watts,
    }
    return models.Plan(
        policy_name=policy.provenance,
        hp_count=profiles.count(models.Profile.PERFORMANCE),
        assignments=tuple(
            models.Assignment(node=node, profile=profile, cap_watts=caps[profile])
            for node, profile in zip(ordered, profiles, strict=True)
        ),
    )


def _clamp(value: _Num, low: _Num, high: _Num) -> _Num:
    return max(low, min(value, high))
