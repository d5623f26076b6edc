"""The end of a tick, exactly once: FSM, transition stream, metrics, events, unlock.

Write batches report here (``record_batch``); the one that brings the pending count
to zero calls ``finish_tick``. The FSM and the stream are updated only for what
landed: a node whose write failed, or that was postponed, keeps the state its
labels show. ``fail_tick`` counts a failed tick and frees the lock at once. Only the
tick's runner (runner.py) calls ``record_batch``, ``finish_tick`` and ``fail_tick``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from joulie_tasks import config, errors, ports
from joulie_tasks.core import damping, guard, models, quiet, schedule
from joulie_tasks.ports import metrics
from joulie_tasks.workflow import apply, cache_tick, events, lifecycle

logger = logging.getLogger(__name__)


def record_batch(
    ref: lifecycle.TickRef, index: int, result: apply.ApplyResult, *, state: ports.state.StateStore
) -> bool:
    """Count a finished batch once; True when it was the last one of the tick."""
    increments = metrics.Values().add(metrics.WRITES, result.written)
    for reason, n in result.retries.items():
        increments.add(metrics.KUBE_RETRIES, n, reason=reason.value)
    if result.failures:
        increments.add(metrics.WRITE_FAILURES, len(result.failures))
    if result.skipped:
        state.add_skipped(ref.tick_id, result.skipped)
    done = ports.state.BatchDone(
        failures=result.failures,
        written=result.written,
        retries=sum(result.retries.values()),
        counters=increments.as_dict(),
    )
    remaining = state.finish_batch(ref.tick_id, index, done)
    if remaining is None:
        return False  # a redelivered batch already counted
    return remaining <= 0


def finish_tick(
    ref: lifecycle.TickRef,
    *,
    state: ports.state.StateStore,
    cache: ports.cache.TickCache | None,
    settings: config.Settings,
) -> lifecycle.TickReport | None:
    """End the tick exactly once: FSM, transition stream, metrics, lock release."""
    if not state.mark(ref.tick_id, "finished"):
        return None
    fed = cache_tick.mark(ref, state=state)
    if fed is not None and fed.quiet:
        report = _finish_quiet(ref, state=state)
    else:
        report = _finish_full(ref, fed, state=state, settings=settings)
    increments = metrics.duration_increments(metrics.TOTAL_STAGE, report.duration_s)
    result = models.TickResult.FAILED_WRITES if report.failures else models.TickResult.COMPLETED
    increments.update(metrics.tick_counted(result))
    if report.quiet:
        increments.update(metrics.Values().add(metrics.QUIET_TICKS).as_dict())
    state.add_counters(increments)
    state.set_gauges(metrics.Values().set(metrics.LAST_TICK, ref.tick_time).as_dict())
    state.set_last_tick(report.summary().model_dump(mode="json"))
    state.release_lock(ref.tick_id)
    cache_tick.served(ref, state=state, cache=cache)
    logger.info(
        "tick %s: done in %.3fs%s: %d nodes, %d writes, %d failed, %d applied, %d deferred",
        ref.tick_id,
        report.duration_s,
        " (quiet)" if report.quiet else "",
        report.nodes,
        report.written,
        len(report.failures),
        report.applied,
        report.deferred,
    )
    return report


def _finish_full(
    ref: lifecycle.TickRef,
    fed: models.CacheMark | None,
    *,
    state: ports.state.StateStore,
    settings: config.Settings,
) -> lifecycle.TickReport:
    """The report of a tick that ran its stages, its FSM and stream recorded."""
    writes_started = state.writes_started(ref.tick_id)
    write_phase = 0.0 if writes_started is None else max(0.0, time.time() - writes_started)
    failures, written, retries = state.batch_results(ref.tick_id)
    guarded = state.load_guarded(ref.tick_id)
    gone = state.skipped_nodes(ref.tick_id)
    if gone:
        # Deleted since the snapshot: no state or transition is recorded for them, and
        # the FSM forgets them (as any node no longer decided).
        kept = tuple(d for d in guarded.decisions if d.node not in gone)
        guarded = guarded.model_copy(update={"decisions": kept})
    writes = state.load_writes(ref.tick_id)
    applied = deferred = 0
    if not (ref.dry_run or ref.paused):
        converged = None
        if fed is not None and fed.fed and cache_tick.quiet_allowed(settings):
            # Quiet ticks stop where a NodeTwin status falls due or a window opens or closes.
            edge = schedule.next_edge(settings.schedule, at=ref.tick_time)
            due = min((t for t in (fed.due, edge) if t is not None), default=None)
            converged = quiet.converged(
                guarded,
                writes_empty=writes.empty and not gone,
                failures=len(failures),
                rev=fed.rev,
                settings=settings.digest,
                tick_id=ref.tick_id,
                horizon_s=settings.watch_relist_interval,
                due=due,
            )
        applied, deferred = _record_outcome(
            ref, guarded, failures, writes.nodes(), state, settings, converged=converged
        )
    return lifecycle.TickReport(
        tick_id=ref.tick_id,
        tick_time=ref.tick_time,
        policy=guarded.policy_name,
        nodes=len(guarded.decisions),
        writes_planned=len(writes.labels) + len(writes.profiles),
        written=written,
        retries=retries,
        failures=failures,
        applied=applied,
        deferred=deferred,
        duration_s=time.time() - ref.started_at,
        dry_run=ref.dry_run,
        paused=ref.paused,
        decisions=guarded.decisions,
        write_phase_s=write_phase,
    )


def _finish_quiet(ref: lifecycle.TickRef, *, state: ports.state.StateStore) -> lifecycle.TickReport:
    """The report of a quiet tick: it counts the deferred downgrade of each draining
    node (D18) and nothing else; the FSM is already what this tick would write."""
    record = state.converged()
    transitions = [] if record is None else quiet.deferred_transitions(record)
    counts = metrics.Values()
    for t in transitions:
        _count_transition(counts, t)
    state.add_counters(counts.as_dict())
    return lifecycle.TickReport(
        tick_id=ref.tick_id,
        tick_time=ref.tick_time,
        policy="" if record is None else record.policy,
        nodes=0 if record is None else record.nodes,
        writes_planned=0,
        written=0,
        retries=0,
        failures={},
        applied=0,
        deferred=len(transitions),
        duration_s=time.time() - ref.started_at,
        dry_run=ref.dry_run,
        paused=ref.paused,
        quiet=True,
    )


#: The FSM record fields a tick compares with the stored record: a record that differs
#: only in the tick that wrote it is not sent again.
_COMPARED_FIELDS = tuple(f for f in models.FsmRecord.model_fields if f not in ("tick_id", "token"))


def _changed(record: models.FsmRecord, prev: models.FsmRecord | None) -> bool:
    return prev is None or any(getattr(record, f) != getattr(prev, f) for f in _COMPARED_FIELDS)


def _record_outcome(
    ref: lifecycle.TickRef,
    guarded: models.GuardedPlan,
    failures: Mapping[str, str],
    needs_write: set[models.NodeName],
    state: ports.state.StateStore,
    settings: config.Settings,
    *,
    converged: models.Converged | None,
) -> tuple[int, int]:
    """Update FSM and stream for what landed; failed nodes keep their previous state.

    Only the FSM records that changed are sent (with the converged record, or its
    removal, in the same fenced call). Downgrades that landed are entered in the budget
    ledger by the same script that writes the FSM; a hold that starts is counted,
    streamed and (see events.py) announced.
    """
    previous = state.fsm()
    records: dict[str, models.FsmRecord] = {}
    entries: list[models.TransitionEntry] = []
    counts = metrics.Values()
    downgraded: list[str] = []
    deferred = 0
    for d in guarded.decisions:
        prev = previous.get(d.node)
        if d.node in failures or d.postponed:
            record = _failed_record(d, prev, ref, failures.get(d.node))
            if _changed(record, prev):
                records[d.node] = record
            continue
        since = prev.since if prev is not None and prev.state == d.to_state else None
        # built from typed values, thousands per tick: no validation needed
        record = models.FsmRecord.model_construct(
            state=d.to_state,
            profile=d.profile,
            draining=d.draining,
            since=since if since is not None else ref.tick_time,
            tick_id=ref.tick_id,
            token=ref.token,
            performance_pods=d.performance_pods,
            written=d.node in needs_write,
            last_error=None,
            profile_since=_profile_since(d.from_state, d.profile, prev, ref.tick_time),
            held_by=d.hold,
        )
        if damping.is_downgrade(d):
            downgraded.append(d.node)  # always sent: its ledger entry rides on the record
            records[d.node] = record
        elif _changed(record, prev):
            records[d.node] = record
        if d.hold is not None and d.hold_started:
            counts.add(metrics.TRANSITIONS_HELD, reason=d.hold.value)
            entries.append(_held_entry(d, ref))
        for t in d.transitions:
            _count_transition(counts, t)
            if t.result is models.TransitionResult.DEFERRED:
                deferred += 1
                if d.from_state is models.NodeState.DRAINING_PERFORMANCE:
                    continue  # streamed when the drain started; counted every tick (D18)
            entries.append(_entry(t, reason=_reason(d), policy=d.policy_name, ref=ref))
    window = settings.downgrade_budget_window
    spend = ports.state.Spend(
        nodes=tuple(downgraded),
        time=ref.tick_time,
        keep_after=ref.tick_time - 2 * window,  # a margin for clocks a little behind
        tick_id=ref.tick_id,
    )
    managed = {d.node for d in guarded.decisions}
    state.update_fsm(
        ref.token,
        {n: r.model_dump(mode="json") for n, r in records.items()},
        spend=spend,
        converged=converged,
        forget=[n for n in previous if n not in managed],
    )
    state.append_transitions(
        [e.fields() for e in entries], maxlen=settings.transition_stream_maxlen
    )
    state.add_counters(counts.as_dict())
    applied = sum(1 for e in entries if e.result == models.TransitionResult.APPLIED)
    return applied, deferred


def _count_transition(counts: metrics.Values, t: models.Transition) -> None:
    key = metrics.transition_field(t.node, t.from_state.value, t.to_state.value, t.result.value)
    counts.add_field(key)


def _entry(
    t: models.Transition, *, reason: str, policy: str, ref: lifecycle.TickRef
) -> models.TransitionEntry:
    return models.TransitionEntry(
        node=t.node,
        from_state=t.from_state,
        to_state=t.to_state,
        result=t.result,
        reason=reason,
        policy=policy,
        tick_id=ref.tick_id,
        time=ref.tick_time,
    )


def _profile_since(
    before: models.NodeState,
    profile: models.Profile,
    prev: models.FsmRecord | None,
    tick_time: float,
) -> float | None:
    """When the node took ``profile``: now if it changes this tick, else what the FSM
    knew (None when it never saw the change, so the dwell holds nothing)."""
    if guard.profile_of(before)[0] is not profile:
        return tick_time
    if prev is not None and prev.profile is profile:
        return prev.profile_since
    return None


def _held_entry(d: models.Decision, ref: lifecycle.TickRef) -> models.TransitionEntry:
    """The stream entry of a hold that starts: the change the plan wanted, withheld."""
    wanted = guard.state_of(d.planned, False)
    hold = d.hold.value if d.hold is not None else ""
    return models.TransitionEntry(
        node=d.node,
        from_state=d.from_state,
        to_state=wanted,
        result=models.TransitionResult.HELD,
        reason=f"{hold}: {d.hold_detail}",
        policy=d.policy_name,
        tick_id=ref.tick_id,
        time=ref.tick_time,
    )


def _failed_record(
    d: models.Decision, prev: models.FsmRecord | None, ref: lifecycle.TickRef, error: str | None
) -> models.FsmRecord:
    """The FSM record of a node not written (failed, postponed): what the cluster shows."""
    profile, draining = guard.profile_of(d.from_state)
    keep = prev is not None and prev.state == d.from_state
    same_profile = prev is not None and profile is not None and prev.profile is profile
    return models.FsmRecord(
        profile_since=prev.profile_since if same_profile and prev is not None else None,
        state=d.from_state,
        profile=profile,
        draining=draining,
        since=prev.since if keep and prev is not None else ref.tick_time,
        tick_id=ref.tick_id,
        token=ref.token,
        performance_pods=d.performance_pods,
        written=False,
        last_error=error,
    )


def _reason(d: models.Decision) -> str:
    if d.draining:
        return f"{d.performance_pods} performance pod(s) still on the node"
    if d.held:
        return "performance-pod count unknown; downgrade withheld"
    if d.postponed:
        return "postponed by MAX_TRANSITIONS_PER_TICK"
    return f"planned {d.planned.value} by {d.policy_name}"


def event_bodies(report: lifecycle.TickReport) -> list[dict[str, Any]]:
    """The Node events of a finished tick (none for a dry run or a paused operator)."""
    if report.dry_run or report.paused:
        return []
    return events.event_bodies(
        report.decisions,
        tick_time=report.tick_time,
        failures=report.failures,
        tick_id=report.tick_id,
        instance=lifecycle.holder_identity(),
    )


def fail_tick(
    ref: lifecycle.TickRef, *, state: ports.state.StateStore, stage: str, error: BaseException
) -> None:
    """Count a failed tick and release its lock so the next tick can start."""
    logger.error("tick %s: %s failed: %s", ref.tick_id, stage, error)
    failed = metrics.tick_counted(models.TickResult.FAILED)
    marked = False
    try:
        marked = state.mark(ref.tick_id, "finished")
        if marked:
            state.add_counters(failed)  # kept by the store if Redis drops now
        state.release_lock(ref.tick_id)
    except errors.StateStoreError as e:
        logger.error("tick %s: cannot record the failure now (counted later): %s", ref.tick_id, e)
        if not marked:  # Redis is away: nobody else can finish this tick
            state.count_later(failed)
