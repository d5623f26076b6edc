"""Damping (docs/SPEC.md §12): minimum dwell, a downgrade budget over a sliding window,
and downgrade freezes from schedule windows, applied to the guarded plan.

Runs after the guard and before MAX_TRANSITIONS_PER_TICK (so a held node does not use
up the per-tick limit). A *downgrade* is a node whose current profile is performance
and whose decided profile is eco (with or without the draining label); an *upgrade* is
the reverse. A withheld change keeps the node in its current state: nothing is written
for it, no transition is recorded, and the decision says why (``hold``).

Rules, in this order, for a downgrade: a freezing window holds it (``freeze``); a node
whose profile changed less than MIN_PROFILE_DWELL ago holds it (``dwell``); past the
budget's remainder it is held (``budget``), in plan order. An upgrade is held only by
the dwell, and only when ``dwell_upgrades`` is on (demand first). The last profile
change time comes from the FSM; a node the FSM does not know (or whose recorded profile
is not its current one) is never held by the dwell.

Pure: the tick time, the FSM records and the budget already spent are arguments; the
spending itself is recorded at the end of the tick (workflow/tick_end.py) in the same
fenced Redis script as the FSM.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from joulie_tasks.core import durations, models

_P = models.Profile
_S = models.NodeState


def budget_limit(params: models.DampingParams, *, eligible: int) -> int | None:
    """Downgrades allowed per window: the count, or the percentage of ``eligible`` nodes
    rounded up (so ``10%`` of 5 nodes is 1, not 0); None when there is no budget."""
    if params.budget_count is not None:
        return params.budget_count
    if params.budget_percent is not None:
        # Round the product in exact decimal first: 10% of 30 is 3, never 3.0000000000000004.
        return math.ceil(round(params.budget_percent * eligible / 100, 9))
    return None


def damp_transitions(
    guarded: models.GuardedPlan, *, params: models.DampingParams, context: models.DampingContext
) -> models.GuardedPlan:
    """Hold the downgrades (and, if asked, upgrades) damping forbids this tick.

    With no dwell, no budget and no freeze the plan is returned unchanged (the
    reference behaviour). The budget's remainder is ``limit - downgrades_used`` (never
    below zero) and is spent in plan order by the downgrades that are not held for
    another reason.
    """
    limit = budget_limit(params, eligible=len(guarded.decisions))
    if params.min_dwell_s <= 0 and limit is None and context.frozen_by is None:
        return guarded
    remaining = None if limit is None else max(0, limit - context.downgrades_used)
    decisions: list[models.Decision] = []
    for d in guarded.decisions:
        current = _current_profile(d.from_state)
        reason: tuple[models.HoldReason, str] | None = None
        if current is _P.PERFORMANCE and d.profile is _P.ECO:
            reason = _downgrade_hold(d, params=params, context=context, remaining=remaining)
            if reason is None and remaining is not None:
                remaining -= 1
        elif current is _P.ECO and d.profile is _P.PERFORMANCE and params.dwell_upgrades:
            reason = _dwell_hold(d, params=params, context=context)
        decisions.append(d if reason is None else _held(d, reason, context=context))
    return guarded.model_copy(update={"decisions": tuple(decisions)})


def _downgrade_hold(
    d: models.Decision,
    *,
    params: models.DampingParams,
    context: models.DampingContext,
    remaining: int | None,
) -> tuple[models.HoldReason, str] | None:
    if context.frozen_by is not None:
        return models.HoldReason.FREEZE, f"downgrades frozen by window {context.frozen_by!r}"
    if dwell := _dwell_hold(d, params=params, context=context):
        return dwell
    if remaining is not None and remaining <= 0:
        window = durations.format_duration(params.budget_window_s)
        return models.HoldReason.BUDGET, f"downgrade budget spent for the last {window}"
    return None


def _dwell_hold(
    d: models.Decision, *, params: models.DampingParams, context: models.DampingContext
) -> tuple[models.HoldReason, str] | None:
    if params.min_dwell_s <= 0:
        return None
    changed = last_profile_change(context.history.get(d.node), d.from_state)
    if changed is None:
        return None
    age = context.tick_time - changed
    if age >= params.min_dwell_s:
        return None
    return models.HoldReason.DWELL, (
        f"profile changed {durations.format_duration(max(age, 0.0))} ago "
        f"(MIN_PROFILE_DWELL {durations.format_duration(params.min_dwell_s)})"
    )


def last_profile_change(record: models.FsmRecord | None, state: models.NodeState) -> float | None:
    """When the node took its current profile, by the FSM; None when the FSM does not
    know the node, records another profile than the one ``state`` shows, or never saw
    the change (a record from before damping, or a node first seen already labelled)."""
    current = _current_profile(state)
    if record is None or current is None or record.profile is not current:
        return None
    return record.profile_since


def _held(
    d: models.Decision, reason: tuple[models.HoldReason, str], *, context: models.DampingContext
) -> models.Decision:
    profile = _current_profile(d.from_state)
    cap = context.performance_cap_watts if profile is _P.PERFORMANCE else context.eco_cap_watts
    record = context.history.get(d.node)
    return d.model_copy(
        update={
            "profile": profile,
            "draining": d.from_state is _S.DRAINING_PERFORMANCE,
            "cap_watts": cap,
            "to_state": d.from_state,
            "transitions": (),
            "hold": reason[0],
            "hold_started": record is None or record.held_by is not reason[0],
            "hold_detail": reason[1],
        }
    )


def _current_profile(state: models.NodeState) -> models.Profile | None:
    if state is _S.ACTIVE_PERFORMANCE:
        return _P.PERFORMANCE
    if state in (_S.ACTIVE_ECO, _S.DRAINING_PERFORMANCE):
        return _P.ECO
    return None


def is_downgrade(d: models.Decision) -> bool:
    """True when the decision changes the node's profile from performance to eco."""
    return _current_profile(d.from_state) is _P.PERFORMANCE and d.profile is _P.ECO


def history_of(records: Mapping[str, models.FsmRecord]) -> dict[models.NodeName, models.FsmRecord]:
    """FSM records keyed by node name (the store returns plain strings)."""
    return {models.NodeName(k): v for k, v in records.items()}
