"""One reconcile tick, stage by stage: the reference order of the workflow.

Each ``stage_*`` function runs one stage of SPEC §2 for a tick identified by a
``TickRef``: it loads the previous stage's output from Redis, calls the pure
core, and stores its own output back under the tick id. tasks.py wraps each in a
Celery task and chains them; ``run_inline`` calls them in order in this process
(``joulie-tasks reconcile --once``). Both share the same lock, fencing token and
FSM update, so a manual tick and a beat tick are the same thing.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from joulie_tasks import (
    apply,
    config,
    decide,
    errors,
    events,
    gcpause,
    kube,
    metrics,
    models,
    snapshot,
    store,
)

logger = logging.getLogger(__name__)

STAGES = ("snapshot", "classify", "plan", "guard", "write")
_STATE_PROFILE: dict[models.NodeState, tuple[models.Profile | None, bool]] = {
    models.NodeState.ACTIVE_PERFORMANCE: (models.Profile.PERFORMANCE, False),
    models.NodeState.DRAINING_PERFORMANCE: (models.Profile.ECO, True),
    models.NodeState.ACTIVE_ECO: (models.Profile.ECO, False),
    models.NodeState.UNKNOWN: (None, False),
}


class TickRef(models.Frozen):
    """What travels through the broker between stages: a reference, never the data."""

    tick_id: str
    token: int
    tick_time: float
    started_at: float
    dry_run: bool = False
    paused: bool = False


class TickReport(models.Frozen):
    """The outcome of a finished tick, for logs, the CLI and the last-tick record."""

    tick_id: str
    tick_time: float
    policy: str
    nodes: int
    writes_planned: int
    written: int
    retries: int
    failures: dict[str, str]
    applied: int
    deferred: int
    duration_s: float
    dry_run: bool
    paused: bool
    decisions: tuple[models.Decision, ...] = ()
    #: Seconds from the write batches being handed out to the last one finishing (0: none).
    write_phase_s: float = 0.0


def holder_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def begin_tick(
    *,
    state: store.RedisStore,
    settings: config.Settings,
    tick_time: float,
    dry_run: bool = False,
) -> TickRef | None:
    """Take the leader lock and a fencing token; None (counted) when another tick runs."""
    tick_id = f"{int(tick_time)}-{uuid.uuid4().hex[:10]}"
    token = state.acquire_lock(tick_id, ttl_s=settings.lock_ttl)
    if token is None:
        state.add_counters({metrics.field(metrics.TICKS, result="skipped_locked"): 1})
        logger.info("tick skipped: the lock is held by %s", state.lock_holder())
        return None
    increments = {}
    if state.swap_leader(holder_identity()):
        increments[metrics.field(metrics.LEADER_CHANGES)] = 1.0
    if settings.policy_fell_back:
        increments[metrics.field(metrics.POLICY_FALLBACKS)] = 1.0
    state.add_counters(increments)
    paused = state.is_paused()
    logger.info("tick %s: started (token %d%s)", tick_id, token, ", paused" if paused else "")
    return TickRef(
        tick_id=tick_id,
        token=token,
        tick_time=tick_time,
        started_at=time.time(),
        dry_run=dry_run,
        paused=paused,
    )


def is_live(ref: TickRef, *, state: store.RedisStore, settings: config.Settings) -> bool:
    """True while the tick holds the lock with the newest token (also renews the lock)."""
    return state.holds_fence(ref.tick_id, ref.token, ttl_s=settings.lock_ttl)


# --- stages -------------------------------------------------------------------------------


def stage_snapshot(
    ref: TickRef, *, gateway: kube.KubeGateway, state: store.RedisStore, settings: config.Settings
) -> None:
    retried: Counter[str] = Counter()

    def count_retry(_exc: BaseException, _attempt: int) -> None:
        retried["transient"] += 1

    try:
        snap = snapshot.take_snapshot(
            gateway=gateway,
            tick_time=ref.tick_time,
            tick_id=ref.tick_id,
            page_size=settings.list_page_size,
            on_retry=count_retry,
        )
    finally:  # read retries count even when the reads finally failed
        state.add_counters(
            {metrics.field(metrics.KUBE_RETRIES, reason=r): float(n) for r, n in retried.items()}
        )
    state.put_model(ref.tick_id, "snapshot", snap)
    # Only classify needs the pods, by far the bulk: plan, guard and write read this
    # copy without them instead of decoding every pod again.
    state.put_model(ref.tick_id, NODES_PART, _without_pods(snap))


#: The tick's snapshot without its pods (``pods`` empty, or None when unreadable).
NODES_PART = "snapshot-nodes"


def _without_pods(snap: models.Snapshot) -> models.Snapshot:
    return snap.model_copy(update={"pods": None if snap.pods is None else ()})


def stage_classify(ref: TickRef, *, state: store.RedisStore) -> None:
    snap = state.get_model(ref.tick_id, "snapshot", models.Snapshot)
    state.put_model(ref.tick_id, "demand", decide.demand_of(snap))


def stage_plan(ref: TickRef, *, state: store.RedisStore, settings: config.Settings) -> None:
    snap = state.get_model(ref.tick_id, NODES_PART, models.Snapshot)
    demand = state.get_model(ref.tick_id, "demand", models.Demand)
    result = decide.plan_for(snap, demand, settings=settings)
    if not result.assignments:
        logger.warning("tick %s: no eligible nodes; nothing will be written", ref.tick_id)
    state.put_model(ref.tick_id, "plan", result)


def stage_guard(ref: TickRef, *, state: store.RedisStore, settings: config.Settings) -> None:
    snap = state.get_model(ref.tick_id, NODES_PART, models.Snapshot)
    demand = state.get_model(ref.tick_id, "demand", models.Demand)
    planned = state.get_model(ref.tick_id, "plan", models.Plan)
    guarded = decide.guard_for(snap, demand, planned, settings=settings)
    for d in guarded.decisions:
        if d.held:
            logger.warning(
                "tick %s: node %s: downgrade withheld, performance-pod count unknown",
                ref.tick_id,
                d.node,
            )
    state.put_model(ref.tick_id, "guarded", guarded)


def stage_write(ref: TickRef, *, state: store.RedisStore, settings: config.Settings) -> int:
    """Compute the minimal writes and split them into batches; return the batch count.

    A paused operator or a dry run stores the writes (for status) but makes none.
    """
    snap = state.get_model(ref.tick_id, NODES_PART, models.Snapshot)
    guarded = state.get_model(ref.tick_id, "guarded", models.GuardedPlan)
    writes = decide.writes_for(snap, guarded, settings=settings)
    state.put_model(ref.tick_id, "writes", writes)
    if ref.dry_run or ref.paused or writes.empty:
        return 0
    groups = apply.group_by_node(writes)
    size = settings.write_batch_size
    count = max(math.ceil(len(groups) / size), 1)  # deletes alone still need a batch
    for index in range(count):
        chunk = groups[index * size : (index + 1) * size]
        batch = models.WriteSet(
            labels=tuple(g.label for g in chunk if g.label is not None),
            profiles=tuple(g.profile for g in chunk if g.profile is not None),
            deletes=writes.deletes if index == 0 else (),
        )
        state.put_model(ref.tick_id, f"batch:{index}", batch)
    state.start_batches(ref.tick_id, count)
    return count


def run_batch(
    ref: TickRef,
    index: int,
    *,
    gateway: kube.KubeGateway,
    state: store.RedisStore,
    settings: config.Settings,
    sleep: Callable[[float], None] = time.sleep,
) -> apply.ApplyResult | None:
    """Apply one batch if the tick still holds its fence; None when fenced off."""
    if not is_live(ref, state=state, settings=settings):
        state.add_counters({metrics.field(metrics.TICKS, result="fenced"): 1})
        logger.warning("tick %s: batch %d dropped: the tick lost its lock", ref.tick_id, index)
        return None
    batch = state.get_model(ref.tick_id, f"batch:{index}", models.WriteSet)

    still_fenced = _fence_check(ref, state=state, settings=settings)

    result = apply.apply_writes(
        apply.group_by_node(batch),
        gateway=gateway,
        concurrency=settings.write_concurrency,
        tick_id=ref.tick_id,
        sleep=sleep,
        still_fenced=still_fenced,
    )
    if batch.deletes and not result.fenced:
        if still_fenced():
            removed = apply.delete_profiles(
                batch.deletes, gateway=gateway, tick_id=ref.tick_id, sleep=sleep
            )
            result.written += removed.written
            result.failures.update(removed.failures)
        else:
            result.fenced = True
    if result.fenced:
        state.add_counters({metrics.field(metrics.TICKS, result="fenced"): 1})
        logger.warning("tick %s: batch %d cut short: the tick lost its lock", ref.tick_id, index)
        return None
    return result


#: How long a successful fence check is trusted (monotonic clock). The check renews
#: the lock for LOCK_TTL, so nobody else can take it meanwhile; a stall of any length
#: outlasts this and forces a fresh check; and it spares one Redis round trip per
#: API write, a quarter of a write's CPU (profiled by bench/).
FENCE_TRUST_S = 0.25


def _fence_check(
    ref: TickRef, *, state: store.RedisStore, settings: config.Settings
) -> Callable[[], bool]:
    """Asked before every API write: a stalled tick stops at once (see FENCE_TRUST_S)."""
    trust = min(FENCE_TRUST_S, settings.lock_ttl / 10)
    confirmed = [-math.inf]

    def still_fenced() -> bool:
        asked = time.monotonic()
        if asked - confirmed[0] < trust:
            return True
        if not is_live(ref, state=state, settings=settings):
            return False
        confirmed[0] = max(confirmed[0], asked)
        return True

    return still_fenced


def record_batch(
    ref: TickRef, index: int, result: apply.ApplyResult, *, state: store.RedisStore
) -> bool:
    """Count a finished batch once; True when it was the last one of the tick."""
    increments = {metrics.field(metrics.WRITES): float(result.written)}
    for reason, n in result.retries.items():
        increments[metrics.field(metrics.KUBE_RETRIES, reason=reason)] = float(n)
    if result.failures:
        increments[metrics.field(metrics.WRITE_FAILURES)] = float(len(result.failures))
    if result.skipped:
        state.add_skipped(ref.tick_id, result.skipped)
    remaining = state.finish_batch(
        ref.tick_id,
        index,
        failures=result.failures,
        written=result.written,
        retries=sum(result.retries.values()),
    )
    if remaining is None:
        return False  # a redelivered batch already counted
    state.add_counters(increments)
    return remaining <= 0


def finish_tick(
    ref: TickRef, *, state: store.RedisStore, settings: config.Settings
) -> TickReport | None:
    """End the tick exactly once: FSM, transition stream, metrics, lock release."""
    if not state.mark(ref.tick_id, "finished"):
        return None
    writes_started = state.writes_started(ref.tick_id)
    write_phase = 0.0 if writes_started is None else max(0.0, time.time() - writes_started)
    failures, written, retries = state.batch_results(ref.tick_id)
    guarded = state.get_model(ref.tick_id, "guarded", models.GuardedPlan)
    if gone := state.skipped_nodes(ref.tick_id):
        # Deleted since the snapshot: no state or transition is recorded for them, and
        # the FSM forgets them (as any node no longer decided).
        kept = tuple(d for d in guarded.decisions if d.node not in gone)
        guarded = guarded.model_copy(update={"decisions": kept})
    writes = state.get_model(ref.tick_id, "writes", models.WriteSet)
    needs_write = writes.nodes()
    applied = deferred = 0
    if not (ref.dry_run or ref.paused):
        applied, deferred = _record_outcome(ref, guarded, failures, needs_write, state, settings)
    duration = time.time() - ref.started_at
    report = TickReport(
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
        duration_s=duration,
        dry_run=ref.dry_run,
        paused=ref.paused,
        decisions=guarded.decisions,
        write_phase_s=write_phase,
    )
    increments = metrics.duration_increments("total", duration)
    result = "failed_writes" if failures else "completed"
    increments[metrics.field(metrics.TICKS, result=result)] = 1
    state.add_counters(increments)
    state.set_gauges({metrics.field(metrics.LAST_TICK): ref.tick_time})
    state.set_last_tick(report.model_dump(mode="json", exclude={"decisions"}))
    state.release_lock(ref.tick_id)
    logger.info(
        "tick %s: done in %.3fs: %d nodes, %d writes, %d failed, %d applied, %d deferred",
        ref.tick_id,
        duration,
        report.nodes,
        written,
        len(failures),
        applied,
        deferred,
    )
    return report


def _record_outcome(
    ref: TickRef,
    guarded: models.GuardedPlan,
    failures: Mapping[str, str],
    needs_write: set[models.NodeName],
    state: store.RedisStore,
    settings: config.Settings,
) -> tuple[int, int]:
    """Update FSM and stream for what landed; failed nodes keep their previous state."""
    previous = state.fsm_records()
    records: dict[str, dict[str, Any]] = {}
    entries: list[dict[str, str]] = []
    counts: Counter[str] = Counter()
    for d in guarded.decisions:
        prev = previous.get(d.node, {})
        if d.node in failures or d.postponed:
            records[d.node] = _failed_record(d, prev, ref, failures.get(d.node))
            continue
        since = prev.get("since") if prev.get("state") == d.to_state.value else None
        records[d.node] = {
            "state": d.to_state.value,
            "profile": d.profile.value,
            "draining": d.draining,
            "since": since if since is not None else ref.tick_time,
            "tick_id": ref.tick_id,
            "token": ref.token,
            "performance_pods": d.performance_pods,
            "written": d.node in needs_write,
            "last_error": None,
        }
        for t in d.transitions:
            counts[
                metrics.field(
                    metrics.STATE_TRANSITIONS,
                    node=t.node,
                    from_state=t.from_state.value,
                    to_state=t.to_state.value,
                    result=t.result.value,
                )
            ] += 1
            entries.append(
                {
                    "node": t.node,
                    "from": t.from_state.value,
                    "to": t.to_state.value,
                    "result": t.result.value,
                    "reason": _reason(d),
                    "policy": d.policy_name,
                    "tick_id": ref.tick_id,
                    "time": repr(ref.tick_time),
                }
            )
    state.update_fsm(ref.token, records)
    managed = {d.node for d in guarded.decisions}
    state.forget_nodes(n for n in previous if n not in managed)
    state.append_transitions(entries, maxlen=settings.transition_stream_maxlen)
    state.add_counters({k: float(v) for k, v in counts.items()})
    applied = sum(1 for e in entries if e["result"] == models.TransitionResult.APPLIED)
    return applied, len(entries) - applied


def _failed_record(
    d: models.Decision, prev: Mapping[str, Any], ref: TickRef, error: str | None
) -> dict[str, Any]:
    """The FSM record of a node not written (failed, postponed): what the cluster shows."""
    profile, draining = _STATE_PROFILE[d.from_state]
    keep = prev.get("state") == d.from_state.value
    return {
        "state": d.from_state.value,
        "profile": profile.value if profile else None,
        "draining": draining,
        "since": prev.get("since") if keep else ref.tick_time,
        "tick_id": ref.tick_id,
        "token": ref.token,
        "performance_pods": d.performance_pods,
        "written": False,
        "last_error": error,
    }


def _reason(d: models.Decision) -> str:
    if d.draining:
        return f"{d.performance_pods} performance pod(s) still on the node"
    if d.held:
        return "performance-pod count unknown; downgrade withheld"
    if d.postponed:
        return "postponed by MAX_TRANSITIONS_PER_TICK"
    return f"planned {d.planned.value} by {d.policy_name}"


def event_bodies(report: TickReport) -> list[dict[str, Any]]:
    """The Node events of a finished tick (none for a dry run or a paused operator)."""
    if report.dry_run or report.paused:
        return []
    return events.event_bodies(
        report.decisions,
        tick_time=report.tick_time,
        failures=report.failures,
        tick_id=report.tick_id,
        instance=holder_identity(),
    )


def fail_tick(ref: TickRef, *, state: store.RedisStore, stage: str, error: BaseException) -> None:
    """Count a failed tick and release its lock so the next tick can start."""
    logger.error("tick %s: %s failed: %s", ref.tick_id, stage, error)
    failed = {metrics.field(metrics.TICKS, result="failed"): 1.0}
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


def run_stage(
    name: str,
    ref: TickRef,
    *,
    gateway: Callable[[], kube.KubeGateway],
    state: store.RedisStore,
    settings: config.Settings,
) -> int | None:
    """Run one named stage and time it; ``write`` returns the number of batches."""
    started = time.perf_counter()
    result: int | None = None
    # A stage builds and drops tens of thousands of acyclic objects (see gcpause.py);
    # they are all freed before the collector resumes, so it finds nothing to scan.
    with gcpause.paused():
        if name == "snapshot":
            stage_snapshot(ref, gateway=gateway(), state=state, settings=settings)
        elif name == "classify":
            stage_classify(ref, state=state)
        elif name == "plan":
            stage_plan(ref, state=state, settings=settings)
        elif name == "guard":
            stage_guard(ref, state=state, settings=settings)
        elif name == "write":
            result = stage_write(ref, state=state, settings=settings)
        else:
            raise ValueError(f"unknown stage {name!r}")
    state.add_counters(metrics.duration_increments(name, time.perf_counter() - started))
    return result


def run_inline(
    *,
    gateway: kube.KubeGateway,
    state: store.RedisStore,
    settings: config.Settings,
    tick_time: float,
    dry_run: bool = False,
) -> TickReport:
    """One whole tick in this process, through the same stages, lock and FSM.

    Raises TickSkipped when another tick holds the lock.
    """
    ref = begin_tick(state=state, settings=settings, tick_time=tick_time, dry_run=dry_run)
    if ref is None:
        raise errors.TickSkipped(f"another tick holds the lock ({state.lock_holder()})")
    stage = STAGES[0]
    try:
        batches = 0
        for stage in STAGES:
            batches = (
                run_stage(stage, ref, gateway=lambda: gateway, state=state, settings=settings) or 0
            )
        for index in range(batches):
            outcome = run_batch(ref, index, gateway=gateway, state=state, settings=settings)
            if outcome is None:
                raise errors.TickSkipped("the tick lost its lock while writing")
            record_batch(ref, index, outcome, state=state)
        flush_requests(gateway, state)
        report = finish_tick(ref, state=state, settings=settings)
    except BaseException as e:
        fail_tick(ref, state=state, stage=stage, error=e)
        raise
    if report is None:
        raise errors.TickSkipped("the tick was finished elsewhere")
    events.send_events(event_bodies(report), gateway=gateway)
    return report


def flush_requests(gateway: kube.KubeGateway, state: store.RedisStore) -> None:
    """Move the gateway's request counters into the shared metric hash."""
    take = getattr(gateway, "take_request_counts", None)
    if take is None:
        return
    counts = take()
    increments: dict[str, float] = {}
    for (verb, resource, outcome), n in counts.items():
        key = metrics.field(metrics.KUBE_REQUESTS, verb=verb, resource=resource, outcome=outcome)
        increments[key] = float(n)
        if outcome == "409":
            conflict = metrics.field(metrics.KUBE_CONFLICTS)
            increments[conflict] = increments.get(conflict, 0.0) + n
    state.add_counters(increments)
