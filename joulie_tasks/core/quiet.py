"""Quiet ticks: when a tick may skip its stages because nothing it reads has changed
(docs/SPEC.md §9.10). Pure: no I/O.

A tick is a pure function of its inputs (the cache's contents, the settings, the FSM
and the tick time). When a cache-fed tick leaves nothing to write and no decision that
waits on time, the next tick reading the same cache revision with the same settings
decides exactly the same: it is run *quiet*, from the :class:`models.Converged` record
alone, and only records what every tick records (the deferred downgrade of each
draining node, D18). A relist, any cached change, new settings or ``until`` passing
makes the next tick a full one again.
"""

from __future__ import annotations

from joulie_tasks.core import models

#: The transition a draining node records on every tick it lasts (D18).
DEFERRED = models.Transition(
    node="",
    from_state=models.NodeState.ACTIVE_PERFORMANCE,
    to_state=models.NodeState.ACTIVE_ECO,
    result=models.TransitionResult.DEFERRED,
)


def steady_draining(guarded: models.GuardedPlan) -> tuple[str, ...] | None:
    """The draining nodes when every decision is steady (it changes nothing, holds
    nothing and waits for nothing; a draining node's only transition is its deferral);
    None when any decision is not."""
    draining: list[str] = []
    for d in guarded.decisions:
        if d.postponed or d.held or d.hold is not None or d.from_state != d.to_state:
            return None
        if not d.transitions:
            continue
        if any(t.result is not models.TransitionResult.DEFERRED for t in d.transitions):
            return None
        draining.append(d.node)
    return tuple(draining)


def converged(
    guarded: models.GuardedPlan,
    *,
    writes_empty: bool,
    failures: int,
    rev: int,
    settings: str,
    tick_id: str,
    horizon_s: float,
    due: float | None,
) -> models.Converged | None:
    """The record a finished cache-fed tick leaves for quiet ticks, or None when the
    next tick must be a full one: something was written or failed, or a decision is
    not steady. Quiet ticks last ``horizon_s`` at most, and stop at ``due``."""
    if not writes_empty or failures:
        return None
    draining = steady_draining(guarded)
    if draining is None:
        return None
    until = guarded.tick_time + horizon_s
    if due is not None:
        until = min(until, due)
    return models.Converged(
        rev=rev,
        settings=settings,
        tick_id=tick_id,
        tick_time=guarded.tick_time,
        until=until,
        policy=guarded.policy_name,
        nodes=len(guarded.decisions),
        draining=draining,
    )


def holds(record: models.Converged, *, rev: int, settings: str, tick_time: float) -> bool:
    """True when a tick reading cache revision ``rev`` with ``settings`` at
    ``tick_time`` decides what ``record``'s tick decided."""
    return (
        record.rev == rev
        and record.settings == settings
        and record.tick_time <= tick_time < record.until
    )


def deferred_transitions(record: models.Converged) -> list[models.Transition]:
    """The deferral each draining node records this quiet tick (D18)."""
    fields = DEFERRED.model_dump()
    # built without validation: thousands of nodes each tick, from a validated record
    return [models.Transition.model_construct(**{**fields, "node": n}) for n in record.draining]
