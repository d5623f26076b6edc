"""Stage 5: the downgrade guard and node states (docs/SPEC.md §6).

A node planned eco that still runs active performance-only pods is written as eco
*with* the draining label (the downgrade is deferred) instead of plain eco. When the
pod list could not be read (``Demand.known`` is false) we fail safe where the
reference did not: no node is downgraded — a node that is performance or in an
unknown state is held at performance, a draining node stays draining, an eco node
stays eco.

Decisions made here where docs/SPEC.md §6 is silent:

- a node labelled ``performance`` is ActivePerformance whatever its draining label
  says (DrainingPerformance is defined as eco + draining);
- held nodes get the performance cap, which the plan does not carry for an eco
  assignment, so :func:`apply_guard` takes it as ``performance_cap_watts``.

Pure: no I/O, no clock; the tick time is only carried through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from joulie_tasks.core import models

#: A profile-label value from older releases meaning eco + draining.
LEGACY_DRAINING_VALUE = "draining-performance"
_S = models.NodeState


def state_of(profile: models.Profile, draining: bool) -> models.NodeState:
    """The state a (profile, draining) pair denotes; draining only qualifies eco."""
    if profile is models.Profile.PERFORMANCE:
        return _S.ACTIVE_PERFORMANCE
    return _S.DRAINING_PERFORMANCE if draining else _S.ACTIVE_ECO


def profile_of(state: models.NodeState) -> tuple[models.Profile | None, bool]:
    """The inverse of ``state_of``: the (profile, draining) pair a state is written as;
    Unknown has no profile."""
    if state is _S.UNKNOWN:
        return None, False
    if state is _S.ACTIVE_PERFORMANCE:
        return models.Profile.PERFORMANCE, False
    return models.Profile.ECO, state is _S.DRAINING_PERFORMANCE


def read_node_state(
    labels: Mapping[str, str], *, profile_label: str, draining_label: str
) -> models.NodeState:
    """The node's current state from its labels.

    ``performance`` → ActivePerformance; ``eco`` → DrainingPerformance when the
    draining label is exactly ``"true"``, else ActiveEco; the legacy value
    ``draining-performance`` → DrainingPerformance; anything else, or no label,
    → Unknown (the draining label is then ignored).
    """
    value = labels.get(profile_label)
    if value == LEGACY_DRAINING_VALUE:
        return _S.DRAINING_PERFORMANCE
    if value not in (models.Profile.PERFORMANCE, models.Profile.ECO):
        return _S.UNKNOWN
    return state_of(models.Profile(value), labels.get(draining_label) == "true")


def apply_guard(
    plan: models.Plan,
    *,
    nodes: Sequence[models.NodeInfo],
    demand: models.Demand,
    profile_label: str,
    draining_label: str,
    tick_time: float,
    performance_cap_watts: float,
) -> models.GuardedPlan:
    """One :class:`models.Decision` per planned node, in plan order.

    ``nodes`` supply the current labels (a planned node missing from them is in
    state Unknown). Each decision records an *applied* transition when the current
    and desired states are both known and differ, and a *deferred*
    ActivePerformance→ActiveEco transition on every tick that defers a downgrade.
    """
    labels = {node.name: node.labels for node in nodes}
    decisions = tuple(
        _decide(
            assignment,
            current=read_node_state(
                labels.get(assignment.node, {}),
                profile_label=profile_label,
                draining_label=draining_label,
            ),
            demand=demand,
            policy_name=plan.policy_name,
            performance_cap_watts=performance_cap_watts,
        )
        for assignment in plan.assignments
    )
    return models.GuardedPlan(
        tick_time=tick_time, policy_name=plan.policy_name, decisions=decisions
    )


def _decide(
    assignment: models.Assignment,
    *,
    current: models.NodeState,
    demand: models.Demand,
    policy_name: str,
    performance_cap_watts: float,
) -> models.Decision:
    count = demand.performance_pods_by_node.get(assignment.node, 0) if demand.known else None
    held = False
    if assignment.profile is models.Profile.PERFORMANCE:
        profile, draining = models.Profile.PERFORMANCE, False
    elif count is not None:
        profile, draining = models.Profile.ECO, count > 0
    elif current in (_S.ACTIVE_PERFORMANCE, _S.UNKNOWN):
        profile, draining, held = models.Profile.PERFORMANCE, False, True
    else:
        profile, draining = models.Profile.ECO, current is _S.DRAINING_PERFORMANCE
    # Only a held node differs from its plan, and it is held at performance.
    cap = assignment.cap_watts if profile is assignment.profile else performance_cap_watts
    target = state_of(profile, draining)
    transitions: list[models.Transition] = []
    if _S.UNKNOWN not in (current, target) and current is not target:
        transitions.append(
            _transition(node=assignment.node, from_state=current, to_state=target, applied=True)
        )
    if draining:
        transitions.append(
            _transition(
                node=assignment.node,
                from_state=_S.ACTIVE_PERFORMANCE,
                to_state=_S.ACTIVE_ECO,
                applied=False,
            )
        )
    return models.Decision(
        node=assignment.node,
        planned=assignment.profile,
        profile=profile,
        draining=draining,
        cap_watts=cap,
        policy_name=policy_name,
        performance_pods=count,
        from_state=current,
        to_state=target,
        held=held,
        transitions=tuple(transitions),
    )


def _transition(
    *,
    node: models.NodeName,
    from_state: models.NodeState,
    to_state: models.NodeState,
    applied: bool,
) -> models.Transition:
    result = models.TransitionResult.APPLIED if applied else models.TransitionResult.DEFERRED
    return models.Transition(node=node, from_state=from_state, to_state=to_state, result=result)


def limit_profile_changes(guarded: models.GuardedPlan, *, max_changes: int) -> models.GuardedPlan:
    """Let at most ``max_changes`` nodes change profile this tick, in plan order.

    A node changes profile when its decided profile differs from the profile its
    current state shows (an Unknown node always changes). Decisions past the limit
    are postponed: they keep their current state, record no transition and write
    nothing; the next tick plans them again. ``max_changes`` ≤ 0 means no limit
    (the reference behaviour). Draining-only changes are not profile changes.
    """
    if max_changes <= 0:
        return guarded
    changed = 0
    decisions: list[models.Decision] = []
    for d in guarded.decisions:
        if _current_profile(d.from_state) == d.profile:
            decisions.append(d)
            continue
        changed += 1
        if changed <= max_changes:
            decisions.append(d)
        else:
            decisions.append(
                d.model_copy(
                    update={"to_state": d.from_state, "transitions": (), "postponed": True}
                )
            )
    return guarded.model_copy(update={"decisions": tuple(decisions)})


def _current_profile(state: models.NodeState) -> models.Profile | None:
    if state is models.NodeState.ACTIVE_PERFORMANCE:
        return models.Profile.PERFORMANCE
    if state in (models.NodeState.ACTIVE_ECO, models.NodeState.DRAINING_PERFORMANCE):
        return models.Profile.ECO
    return None
