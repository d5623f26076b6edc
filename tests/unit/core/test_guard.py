"""The downgrade guard (docs/SPEC.md §6).

Covers: reading the current state from labels (incl. the legacy value and the
draining label on a performance node); the planned-profile by pod-count matrix; the fail-safe
when pods could not be read; applied and deferred transitions; caps.
"""

from __future__ import annotations

import pytest

from joulie_tasks.core import guard, models
from tests.unit.builders import (
    DRAINING_LABEL,
    ECO_CAP,
    PERF_CAP,
    PROFILE_LABEL,
    TICK,
    make_node,
)

S = models.NodeState
P = models.Profile.PERFORMANCE
E = models.Profile.ECO
APPLIED = models.TransitionResult.APPLIED
DEFERRED = models.TransitionResult.DEFERRED


@pytest.mark.parametrize(
    ("profile", "draining", "state"),
    [
        ("performance", None, S.ACTIVE_PERFORMANCE),
        ("performance", "false", S.ACTIVE_PERFORMANCE),
        ("performance", "true", S.ACTIVE_PERFORMANCE),
        ("eco", None, S.ACTIVE_ECO),
        ("eco", "false", S.ACTIVE_ECO),
        ("eco", "True", S.ACTIVE_ECO),
        ("eco", "true", S.DRAINING_PERFORMANCE),
        ("draining-performance", None, S.DRAINING_PERFORMANCE),
        ("draining-performance", "false", S.DRAINING_PERFORMANCE),
        (None, None, S.UNKNOWN),
        (None, "true", S.UNKNOWN),
        ("turbo", "true", S.UNKNOWN),
        ("Eco", "false", S.UNKNOWN),
        ("", None, S.UNKNOWN),
    ],
    ids=lambda v: repr(v),
)
def test_the_current_state_is_read_from_the_two_labels(
    profile: str | None, draining: str | None, state: models.NodeState
) -> None:
    labels = make_node("n", profile=profile, draining=draining).labels
    read = guard.read_node_state(labels, profile_label=PROFILE_LABEL, draining_label=DRAINING_LABEL)
    assert read is state


@pytest.mark.parametrize(
    ("profile", "draining", "state"),
    [
        (P, False, S.ACTIVE_PERFORMANCE),
        (P, True, S.ACTIVE_PERFORMANCE),
        (E, False, S.ACTIVE_ECO),
        (E, True, S.DRAINING_PERFORMANCE),
    ],
    ids=["perf", "perf-draining", "eco", "eco-draining"],
)
def test_state_of_a_profile_and_draining_flag(
    profile: models.Profile, draining: bool, state: models.NodeState
) -> None:
    assert guard.state_of(profile, draining) is state


def one_node_plan(profile: models.Profile, node: str = "n") -> models.Plan:
    cap = PERF_CAP if profile is P else ECO_CAP
    return models.Plan(
        policy_name="static-partition-v1",
        hp_count=int(profile is P),
        assignments=(
            models.Assignment(node=models.NodeName(node), profile=profile, cap_watts=cap),
        ),
    )


def decide(
    planned: models.Profile,
    *,
    perf_pods: int | None,
    current: tuple[str | None, str | None] = ("performance", "false"),
) -> models.Decision:
    if perf_pods is None:
        demand = models.Demand(known=False)
    else:
        demand = models.Demand(
            performance_pods=perf_pods, performance_pods_by_node={models.NodeName("n"): perf_pods}
        )
    guarded = guard.apply_guard(
        one_node_plan(planned),
        nodes=[make_node("n", profile=current[0], draining=current[1])],
        demand=demand,
        profile_label=PROFILE_LABEL,
        draining_label=DRAINING_LABEL,
        tick_time=TICK,
        performance_cap_watts=PERF_CAP,
    )
    assert guarded.tick_time == TICK
    assert guarded.policy_name == "static-partition-v1"
    (decision,) = guarded.decisions
    return decision


@pytest.mark.parametrize(
    ("planned", "perf_pods", "profile", "draining", "cap"),
    [
        (P, 0, P, False, PERF_CAP),
        (P, 3, P, False, PERF_CAP),
        (E, 2, E, True, ECO_CAP),
        (E, 0, E, False, ECO_CAP),
    ],
    ids=["perf-idle", "perf-busy", "eco-busy-deferred", "eco-idle"],
)
def test_spec_section_6_matrix(
    planned: models.Profile, perf_pods: int, profile: models.Profile, draining: bool, cap: float
) -> None:
    decision = decide(planned, perf_pods=perf_pods)
    assert (decision.profile, decision.draining, decision.cap_watts) == (profile, draining, cap)
    assert decision.performance_pods == perf_pods
    assert decision.held is False


@pytest.mark.parametrize(
    ("current", "profile", "draining", "held", "cap"),
    [
        (("performance", "false"), P, False, True, PERF_CAP),
        ((None, None), P, False, True, PERF_CAP),
        (("turbo", "true"), P, False, True, PERF_CAP),
        (("eco", "true"), E, True, False, ECO_CAP),
        (("draining-performance", None), E, True, False, ECO_CAP),
        (("eco", "false"), E, False, False, ECO_CAP),
    ],
    ids=["active-performance", "no-labels", "unknown-value", "draining", "legacy-draining", "eco"],
)
def test_no_downgrade_is_written_when_pod_counts_are_unknown(
    current: tuple[str | None, str | None],
    profile: models.Profile,
    draining: bool,
    held: bool,
    cap: float,
) -> None:
    decision = decide(E, perf_pods=None, current=current)
    assert (decision.profile, decision.draining, decision.held, decision.cap_watts) == (
        profile,
        draining,
        held,
        cap,
    )
    assert decision.planned is E
    assert decision.performance_pods is None


def test_planned_performance_is_written_even_when_pod_counts_are_unknown() -> None:
    decision = decide(P, perf_pods=None, current=("eco", "false"))
    assert (decision.profile, decision.draining, decision.held) == (P, False, False)


def transitions(decision: models.Decision) -> list[tuple[S, S, models.TransitionResult]]:
    return [(t.from_state, t.to_state, t.result) for t in decision.transitions]


def test_a_deferred_downgrade_records_the_applied_and_the_deferred_transition() -> None:
    # Given a performance node that still runs a performance pod
    # When the plan says eco
    decision = decide(E, perf_pods=1, current=("performance", "false"))
    # Then it moves to DrainingPerformance and the downgrade is deferred
    assert (decision.from_state, decision.to_state) == (
        S.ACTIVE_PERFORMANCE,
        S.DRAINING_PERFORMANCE,
    )
    assert transitions(decision) == [
        (S.ACTIVE_PERFORMANCE, S.DRAINING_PERFORMANCE, APPLIED),
        (S.ACTIVE_PERFORMANCE, S.ACTIVE_ECO, DEFERRED),
    ]


def test_every_tick_that_keeps_deferring_records_a_deferred_transition() -> None:
    decision = decide(E, perf_pods=1, current=("eco", "true"))
    assert transitions(decision) == [(S.ACTIVE_PERFORMANCE, S.ACTIVE_ECO, DEFERRED)]


def test_a_finished_drain_is_an_applied_transition_to_eco() -> None:
    decision = decide(E, perf_pods=0, current=("eco", "true"))
    assert transitions(decision) == [(S.DRAINING_PERFORMANCE, S.ACTIVE_ECO, APPLIED)]


def test_an_idle_downgrade_is_applied_at_once() -> None:
    decision = decide(E, perf_pods=0, current=("performance", "false"))
    assert transitions(decision) == [(S.ACTIVE_PERFORMANCE, S.ACTIVE_ECO, APPLIED)]


def test_an_upgrade_is_applied() -> None:
    decision = decide(P, perf_pods=0, current=("eco", "false"))
    assert transitions(decision) == [(S.ACTIVE_ECO, S.ACTIVE_PERFORMANCE, APPLIED)]


@pytest.mark.parametrize(
    ("planned", "current"),
    [(P, ("performance", "false")), (E, ("eco", "false")), (P, (None, None)), (E, ("x", None))],
    ids=["stays-performance", "stays-eco", "from-unknown-to-perf", "from-unknown-to-eco"],
)
def test_no_transition_is_recorded_when_the_state_is_unchanged_or_was_unknown(
    planned: models.Profile, current: tuple[str | None, str | None]
) -> None:
    assert decide(planned, perf_pods=0, current=current).transitions == ()


def test_a_held_node_in_unknown_state_records_no_transition() -> None:
    decision = decide(E, perf_pods=None, current=(None, None))
    assert (decision.from_state, decision.to_state, decision.transitions) == (
        S.UNKNOWN,
        S.ACTIVE_PERFORMANCE,
        (),
    )


def test_a_held_draining_node_keeps_deferring() -> None:
    decision = decide(E, perf_pods=None, current=("eco", "true"))
    assert transitions(decision) == [(S.ACTIVE_PERFORMANCE, S.ACTIVE_ECO, DEFERRED)]


def test_pods_on_other_nodes_do_not_hold_a_node() -> None:
    demand = models.Demand(performance_pods=5, performance_pods_by_node={models.NodeName("m"): 5})
    guarded = guard.apply_guard(
        one_node_plan(E),
        nodes=[make_node("n", profile="performance"), make_node("m", profile="performance")],
        demand=demand,
        profile_label=PROFILE_LABEL,
        draining_label=DRAINING_LABEL,
        tick_time=TICK,
        performance_cap_watts=PERF_CAP,
    )
    assert [(d.node, d.profile, d.draining) for d in guarded.decisions] == [("n", E, False)]


def test_a_planned_node_missing_from_the_snapshot_is_in_unknown_state() -> None:
    guarded = guard.apply_guard(
        one_node_plan(P, node="ghost"),
        nodes=[],
        demand=models.Demand(),
        profile_label=PROFILE_LABEL,
        draining_label=DRAINING_LABEL,
        tick_time=TICK,
        performance_cap_watts=PERF_CAP,
    )
    assert guarded.decisions[0].from_state is S.UNKNOWN


# --- MAX_TRANSITIONS_PER_TICK ----------------------------------------------------------------


def _flip_all_to_eco(count: int) -> models.GuardedPlan:
    from joulie_tasks.core import plan as planning

    nodes = [make_node(f"n{i}", profile="performance", draining="false") for i in range(count)]
    planned = planning.make_plan(
        [n.name for n in nodes],
        demand=models.Demand(),
        params=models.PolicyParams(static_hp_frac=0.0),
        tick_time=0,
    )
    return guard.apply_guard(
        planned,
        nodes=nodes,
        demand=models.Demand(),
        profile_label="joulie.io/power-profile",
        draining_label="joulie.io/draining",
        tick_time=0,
        performance_cap_watts=5000,
    )


def test_at_most_max_transitions_nodes_change_profile_in_plan_order() -> None:
    limited = guard.limit_profile_changes(_flip_all_to_eco(5), max_changes=2)
    postponed = [d.node for d in limited.decisions if d.postponed]
    assert postponed == ["n2", "n3", "n4"]
    for d in limited.decisions[2:]:
        assert d.to_state is d.from_state
        assert d.transitions == ()


def test_zero_means_no_limit() -> None:
    guarded = _flip_all_to_eco(5)
    assert guard.limit_profile_changes(guarded, max_changes=0) == guarded


def test_nodes_already_at_their_profile_do_not_use_the_budget() -> None:
    guarded = _flip_all_to_eco(3)
    settled = guarded.model_copy(
        update={
            "decisions": tuple(
                d.model_copy(update={"from_state": models.NodeState.ACTIVE_ECO})
                for d in guarded.decisions
            )
        }
    )
    assert not any(
        d.postponed for d in guard.limit_profile_changes(settled, max_changes=1).decisions
    )


@pytest.mark.parametrize("state", list(models.NodeState), ids=str)
def test_profile_of_is_the_inverse_of_state_of(state: models.NodeState) -> None:
    profile, draining = guard.profile_of(state)
    if state is models.NodeState.UNKNOWN:
        assert (profile, draining) == (None, False)
    else:
        assert profile is not None
        assert guard.state_of(profile, draining) is state
