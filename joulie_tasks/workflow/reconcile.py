"""One reconcile tick, stage by stage: the stage bodies and their order.

Each ``stage_*`` function runs one stage of docs/SPEC.md §2 for a tick identified by a
``lifecycle.TickRef``: it loads the previous stage's output from Redis, calls the pure
core, and stores its own output back under the tick id; ``apply_batch`` applies one
write batch. These are bodies only: they check no fence, renew no lock, tag no
request and end no tick. runner.py's ``TickRunner`` runs them and owns all of that,
for a Celery tick (queue/tasks.py) and ``reconcile --once`` alike.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from joulie_tasks import config, ports
from joulie_tasks.adapters import gcpause
from joulie_tasks.core import decide, models, twin
from joulie_tasks.ports import cluster, metrics
from joulie_tasks.workflow import apply, cache_tick, lifecycle, snapshot

logger = logging.getLogger(__name__)

#: A stage as the table runs it: (ref, gateway factory, state, cache, settings) -> batch
#: count.
Stage = Callable[
    [
        lifecycle.TickRef,
        Callable[[], cluster.KubeGateway],
        ports.state.StateStore,
        ports.cache.TickCache | None,
        config.Settings,
    ],
    int | None,
]


# --- stages -------------------------------------------------------------------------------


def stage_snapshot(
    ref: lifecycle.TickRef,
    *,
    gateway: cluster.KubeGateway,
    state: ports.state.StateStore,
    cache: ports.cache.TickCache | None,
    settings: config.Settings,
) -> None:
    if cache_tick.start_quiet(ref, state=state, cache=cache, settings=settings):
        return  # nothing changed since the last converged tick (docs/SPEC.md §9.10)
    cached = cache_tick.read(ref, state=state, cache=cache, settings=settings)
    if cached is not None:  # synced and fresh: no API request at all
        snap, demand, twins_cached, hardware_cached = cached
        if settings.output_api.writes_twins and not twins_cached:
            snap = snapshot.with_twins(snap, gateway=gateway, page_size=settings.list_page_size)
        if settings.reads_hardware and not hardware_cached:
            snap = snapshot.with_hardware(snap, gateway=gateway, page_size=settings.list_page_size)
        # No pods (the cache holds their counts, already the demand): classify reads
        # nothing, so the pod-less copy is the only one stored.
        state.save_nodes(ref.tick_id, snap)
        state.save_demand(ref.tick_id, demand)
        return
    retried: Counter[models.RetryReason] = Counter()

    def count_retry(_exc: BaseException, _attempt: int) -> None:
        retried[models.RetryReason.TRANSIENT] += 1

    try:
        snap = snapshot.take_snapshot(
            gateway=gateway,
            tick_time=ref.tick_time,
            tick_id=ref.tick_id,
            page_size=settings.list_page_size,
            on_retry=count_retry,
            read_twins=settings.output_api.writes_twins,
            read_hardware=settings.reads_hardware,
        )
    finally:  # read retries count even when the reads finally failed
        retries = metrics.Values()
        for reason, n in retried.items():
            retries.add(metrics.KUBE_RETRIES, n, reason=reason.value)
        state.add_counters(retries.as_dict())
    state.save_snapshot(ref.tick_id, snap)
    # Only classify needs the pods, by far the bulk: plan, guard and write read this
    # copy without them instead of decoding every pod again.
    state.save_nodes(ref.tick_id, _without_pods(snap))


#: The tick's snapshot without its pods (``pods`` empty, or None when unreadable).


def _without_pods(snap: models.Snapshot) -> models.Snapshot:
    return snap.model_copy(update={"pods": None if snap.pods is None else ()})


def stage_classify(ref: lifecycle.TickRef, *, state: ports.state.StateStore) -> None:
    fed = cache_tick.mark(ref, state=state)
    if fed is not None and fed.fed:
        return  # the cache's counts are the demand (stored by the snapshot stage)
    snap = state.load_snapshot(ref.tick_id)
    state.save_demand(ref.tick_id, decide.demand_of(snap))


def stage_plan(
    ref: lifecycle.TickRef, *, state: ports.state.StateStore, settings: config.Settings
) -> None:
    if cache_tick.is_quiet(ref, state=state):
        return
    snap = state.load_nodes(ref.tick_id)
    demand = state.load_demand(ref.tick_id)
    result = decide.plan_for(snap, demand, settings=settings)
    if not result.assignments:
        logger.warning("tick %s: no eligible nodes; nothing will be written", ref.tick_id)
    state.save_plan(ref.tick_id, result)


def stage_guard(
    ref: lifecycle.TickRef, *, state: ports.state.StateStore, settings: config.Settings
) -> None:
    if cache_tick.is_quiet(ref, state=state):
        return
    snap = state.load_nodes(ref.tick_id)
    demand = state.load_demand(ref.tick_id)
    planned = state.load_plan(ref.tick_id)
    history, used = damping_inputs(state, settings=settings, tick_time=ref.tick_time)
    guarded = decide.guard_for(
        snap, demand, planned, settings=settings, history=history, downgrades_used=used
    )
    for d in guarded.decisions:
        if d.held:
            logger.warning(
                "tick %s: node %s: downgrade withheld, performance-pod count unknown",
                ref.tick_id,
                d.node,
            )
        elif d.hold is not None and d.hold_started:
            logger.info(
                "tick %s: node %s: %s → %s held (%s): %s",
                ref.tick_id,
                d.node,
                d.from_state.value,
                d.planned.value,
                d.hold.value,
                d.hold_detail,
            )
    state.save_guarded(ref.tick_id, guarded)


def damping_inputs(
    state: ports.state.StateStore, *, settings: config.Settings, tick_time: float
) -> tuple[dict[str, models.FsmRecord] | None, int]:
    """What damping reads from Redis (docs/SPEC.md §12): the FSM and the downgrades in the
    budget window. Nothing is read when no damping is configured (the reference)."""
    if not settings.damps:
        return None, 0
    params = settings.damping_params()
    used = state.downgrades_since(tick_time - params.budget_window_s) if params.has_budget else 0
    return state.fsm(), used


def stage_write(
    ref: lifecycle.TickRef, *, state: ports.state.StateStore, settings: config.Settings
) -> int:
    """Compute the minimal writes and split them into batches; return the batch count.

    A paused operator or a dry run stores the writes (for status) but makes none. A
    quiet tick has none; a cache-fed one notes when a NodeTwin status falls due.
    """
    fed = cache_tick.mark(ref, state=state)
    if fed is not None and fed.quiet:
        return 0
    snap = state.load_nodes(ref.tick_id)
    guarded = state.load_guarded(ref.tick_id)
    writes = decide.writes_for(snap, guarded, settings=settings)
    state.save_writes(ref.tick_id, writes)
    if fed is not None and fed.fed and snap.twins:
        state.save_cache_mark(
            ref.tick_id, fed.model_copy(update={"due": twin.status_due(snap.twins)})
        )
    if ref.dry_run or ref.paused or writes.empty:
        return 0
    batches = writes.batches(settings.write_batch_size)
    for index, batch in enumerate(batches):
        state.save_batch(ref.tick_id, index, batch)
    state.start_batches(ref.tick_id, len(batches))
    return len(batches)


def apply_batch(
    ref: lifecycle.TickRef,
    index: int,
    *,
    gateway: cluster.KubeGateway,
    state: ports.state.StateStore,
    cache: ports.cache.TickCache | None,
    settings: config.Settings,
    fence_holds: Callable[[], bool],
    sleep: Callable[[float], None] = time.sleep,
) -> apply.ApplyResult:
    """Apply write batch ``index``: its node writes, then its profile and twin deletes.

    ``fence_holds`` (the runner's fence) is asked before every API write; once it
    answers False nothing more is sent and the result says ``fenced_off``. The caller
    checks the fence before the batch (runner.py).
    """
    batch = state.load_batch(ref.tick_id, index)
    stopped: dict[str, str] = {}
    fed = cache_tick.mark(ref, state=state)
    if fed is not None and fed.fed:  # safety never rests on the cache
        batch, stopped = cache_tick.confirm(
            batch, ref=ref, gateway=gateway, state=state, cache=cache, settings=settings
        )

    result = apply.apply_writes(
        apply.group_by_node(batch),
        gateway=gateway,
        concurrency=settings.write_concurrency,
        tick_id=ref.tick_id,
        sleep=sleep,
        fence_holds=fence_holds,
    )
    # Then the objects of deleted or unmanaged nodes: profiles, NodeTwins (OUTPUT_API,
    # docs/SPEC.md §13.8), each delete behind the fence like every write.
    for names, kind in (
        (batch.deletes, apply.PROFILES),
        (batch.twin_deletes, apply.TWINS),
    ):
        if not names or result.fenced_off:
            continue
        if not fence_holds():
            result.fenced_off = True
            break
        removed = apply.delete_objects(
            names, kind=kind, gateway=gateway, tick_id=ref.tick_id, sleep=sleep
        )
        result.written += removed.written
        result.failures.update(removed.failures)
    result.skipped.update(stopped)
    return result


#: The stages in order (docs/SPEC.md §2); tasks.py makes one Celery task of each.
_STAGE_TABLE: dict[str, Stage] = {
    "snapshot": lambda ref, gw, state, cache, s: stage_snapshot(
        ref, gateway=gw(), state=state, cache=cache, settings=s
    ),
    "classify": lambda ref, gw, state, cache, s: stage_classify(ref, state=state),
    "plan": lambda ref, gw, state, cache, s: stage_plan(ref, state=state, settings=s),
    "guard": lambda ref, gw, state, cache, s: stage_guard(ref, state=state, settings=s),
    "write": lambda ref, gw, state, cache, s: stage_write(ref, state=state, settings=s),
}
STAGES = tuple(_STAGE_TABLE)


def run_stage(
    name: str,
    ref: lifecycle.TickRef,
    *,
    gateway: Callable[[], cluster.KubeGateway],
    state: ports.state.StateStore,
    cache: ports.cache.TickCache | None,
    settings: config.Settings,
) -> int | None:
    """Run one named stage and time it; ``write`` returns the number of batches."""
    started = time.perf_counter()
    try:
        stage = _STAGE_TABLE[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}") from None
    # A stage builds and drops tens of thousands of acyclic objects (see gcpause.py);
    # they are all freed before the collector resumes, so it finds nothing to scan.
    with gcpause.paused():
        result = stage(ref, gateway, state, cache, settings)
    state.add_counters(metrics.duration_increments(name, time.perf_counter() - started))
    return result
