"""core/quiet.py: which finished tick leaves a converged record, and which later tick
it lets run quiet (docs/SPEC.md §9.10)."""

from __future__ import annotations

import pytest

from joulie_tasks.core import models, quiet

AP = models.NodeState.ACTIVE_PERFORMANCE
DP = models.NodeState.DRAINING_PERFORMANCE
AE = models.NodeState.ACTIVE_ECO
PERF, ECO = models.Profile.PERFORMANCE, models.Profile.ECO


def decision(node: str, state: models.NodeState, **changes: object) -> models.Decision:
    profile = PERF if state is AP else ECO
    base = models.Decision(
        node=node,
        planned=profile,
        profile=profile,
        draining=state is DP,
        cap_watts=0.0,
        policy_name="queue_aware_v1",
        performance_pods=2 if state is DP else 0,
        from_state=state,
        to_state=state,
        transitions=(
            (
                models.Transition(
                    node=node, from_state=AP, to_state=AE, result=models.TransitionResult.DEFERRED
                ),
            )
            if state is DP
            else ()
        ),
    )
    return base.model_copy(update=changes)


def plan(*decisions: models.Decision) -> models.GuardedPlan:
    return models.GuardedPlan(tick_time=1000.0, policy_name="queue_aware_v1", decisions=decisions)


def converged(guarded: models.GuardedPlan, **changes: object) -> models.Converged | None:
    args: dict[str, object] = {
        "writes_empty": True,
        "failures": 0,
        "rev": 41,
        "settings": "abc",
        "tick_id": "t1",
        "horizon_s": 600.0,
        "due": None,
    }
    args.update(changes)
    return quiet.converged(guarded, **args)  # type: ignore[arg-type]


STEADY = plan(decision("a", AP), decision("b", DP), decision("c", AE))


def test_a_steady_tick_leaves_its_draining_nodes_and_a_horizon() -> None:
    record = converged(STEADY)
    assert record is not None
    assert record.draining == ("b",)
    assert (record.rev, record.settings, record.nodes) == (41, "abc", 3)
    assert record.until == 1600.0
    assert record.policy == "queue_aware_v1"


def test_a_twin_status_falling_due_ends_the_horizon_earlier() -> None:
    record = converged(STEADY, due=1200.0)
    assert record is not None
    assert record.until == 1200.0


@pytest.mark.parametrize(
    "changes",
    [
        {"writes_empty": False},
        {"failures": 1},
    ],
    ids=["something-written", "a-write-failed"],
)
def test_a_tick_that_wrote_or_failed_leaves_no_record(changes: dict[str, object]) -> None:
    assert converged(STEADY, **changes) is None


@pytest.mark.parametrize(
    "changed",
    [
        decision("x", AP, to_state=AE, profile=ECO),
        decision("x", AP, postponed=True),
        decision("x", AP, held=True),
        decision("x", AP, hold=models.HoldReason.DWELL),
        decision(
            "x",
            AP,
            transitions=(
                models.Transition(
                    node="x", from_state=AP, to_state=AE, result=models.TransitionResult.APPLIED
                ),
            ),
        ),
    ],
    ids=["changes-state", "postponed", "count-unknown", "damping-hold", "applied"],
)
def test_a_decision_that_is_not_steady_leaves_no_record(changed: models.Decision) -> None:
    assert converged(plan(decision("a", AP), changed)) is None


def test_a_record_holds_only_for_the_same_revision_settings_and_before_its_horizon() -> None:
    record = converged(STEADY)
    assert record is not None
    assert quiet.holds(record, rev=41, settings="abc", tick_time=1000.0)
    assert quiet.holds(record, rev=41, settings="abc", tick_time=1599.9)
    assert not quiet.holds(record, rev=41, settings="abc", tick_time=1600.0)
    assert not quiet.holds(record, rev=41, settings="abc", tick_time=999.0)  # clock behind
    assert not quiet.holds(record, rev=42, settings="abc", tick_time=1100.0)
    assert not quiet.holds(record, rev=41, settings="abd", tick_time=1100.0)


def test_a_quiet_tick_defers_each_draining_node_as_a_full_tick_does() -> None:
    record = converged(plan(decision("b", DP), decision("a", AP), decision("z", DP)))
    assert record is not None
    found = quiet.deferred_transitions(record)
    assert [(t.node, t.from_state, t.to_state, t.result) for t in found] == [
        ("b", AP, AE, models.TransitionResult.DEFERRED),
        ("z", AP, AE, models.TransitionResult.DEFERRED),
    ]
