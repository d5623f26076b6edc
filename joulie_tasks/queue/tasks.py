"""Thin Celery task wrappers: the tick, one task per stage, and the write batches.

A tick is ``tick`` (dedup + lock) → chain ``snapshot → classify → plan → guard →
write`` → ``write_batch`` (N of them). Messages carry only a TickRef (ids, token, time);
the data stays in Redis (store.py). Every stage first checks that its tick still
holds the lock with the newest fencing token and drops the work otherwise, keeps
the lock alive while it runs, and on failure releases the lock and stops the
chain. The batch that finishes last ends the tick, exactly once. No business
logic lives here: see reconcile.py and the pure stage modules.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from celery import Task, chain, signals
from celery.exceptions import Ignore

from joulie_tasks import config, errors
from joulie_tasks.adapters import clients, kube, metrics, store
from joulie_tasks.core import models
from joulie_tasks.queue.celery_app import TICK_TASK, app
from joulie_tasks.workflow import events, lifecycle, outcome, reconcile
from joulie_tasks.workflow import fence as fencing

logger = logging.getLogger(__name__)

#: A tick lost to a Redis outage: counted (store.count_later) when Redis is back.
_FAILED = metrics.tick_counted(models.TickResult.FAILED)


class ProcessResources:
    """The clients one worker process owns: a Redis store and a Kubernetes gateway, built
    by the wiring root (adapters/clients.py) on first use and never shared across
    fork() (a pid change drops them)."""

    def __init__(self) -> None:
        self._pid: int | None = None
        self._state: store.RedisStore | None = None
        self._gateway: kube.ApiGateway | None = None

    def reset(self) -> None:
        self._pid, self._state, self._gateway = os.getpid(), None, None

    def _check_pid(self) -> None:
        if self._pid != os.getpid():
            self.reset()

    def state(self) -> store.RedisStore:
        self._check_pid()
        if self._state is None:
            self._state = clients.redis_store(_settings())
        return self._state

    def gateway(self) -> kube.ApiGateway:
        self._check_pid()
        if self._gateway is None:
            self._gateway = clients.gateway(_settings())
        return self._gateway

    def built_gateway(self) -> kube.ApiGateway | None:
        """The gateway if this process has built one (its request counters to flush)."""
        self._check_pid()
        return self._gateway


class OperatorTask(Task):  # type: ignore[type-arg]
    """Base class of every joulie task: owns the process's resources (Celery's idiom for
    per-process connections), shared by all tasks of the process."""

    resources = ProcessResources()

    @property
    def state(self) -> store.RedisStore:
        return self.resources.state()

    @property
    def gateway(self) -> kube.ApiGateway:
        return self.resources.gateway()


@signals.worker_process_init.connect
def _reset_after_fork(**_: object) -> None:
    """Never share a Kubernetes client or Redis connection across fork()."""
    OperatorTask.resources.reset()


def _settings() -> config.Settings:
    return config.cached_settings()


def _state() -> store.RedisStore:
    return OperatorTask.resources.state()


def _gateway() -> kube.ApiGateway:
    return OperatorTask.resources.gateway()


@contextmanager
def _tagged(ref: lifecycle.TickRef, state: store.RedisStore) -> Iterator[None]:
    """Name the tick on every API request; flush the request counters afterwards."""
    try:
        kube.set_tick_tag(_tag(ref))
        yield
    finally:
        kube.set_tick_tag(None)
        _flush_requests(state)


def _flush_requests(state: store.RedisStore) -> None:
    """Move this process's API request counters into the shared metrics. Called before
    a batch is recorded or the tick ends too, so a finished tick's counters are whole."""
    gateway = OperatorTask.resources.built_gateway()
    if gateway is not None:
        try:
            reconcile.flush_requests(gateway, state)
        except errors.StateStoreError as e:
            logger.warning("cannot flush request counters: %s", e)


@contextmanager
def _lock_kept_alive(ref: lifecycle.TickRef) -> Iterator[None]:
    """Renew the leader lock in the background while a stage runs."""
    settings = _settings()
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(settings.lock_ttl / 3):
            try:
                if not _state().renew_lock(ref.tick_id, ttl_s=settings.lock_ttl):
                    return
            except errors.StateStoreError as e:
                logger.warning("tick %s: cannot renew the lock: %s", ref.tick_id, e)

    thread = threading.Thread(target=renew, name="lock-renewal", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _tag(ref: lifecycle.TickRef) -> str:
    return f"{ref.token} {ref.tick_id}"


def _guarded(
    ref_data: dict[str, Any], stage: str, body: Callable[[lifecycle.TickRef], None]
) -> None:
    """Run a stage body for a live tick: drop stale work, fail the tick on error."""
    ref = lifecycle.TickRef.model_validate(ref_data)
    state, settings = _state(), _settings()
    try:
        live = fencing.Fence(ref, state=state, settings=settings).holds()
    except errors.StateStoreError as e:
        logger.error("tick %s: %s skipped: %s", ref.tick_id, stage, e)
        state.count_later(_FAILED)  # the chain ends here; counted once Redis is back
        raise Ignore() from e
    if not live:
        state.add_counters(metrics.tick_counted(models.TickResult.EXPIRED))
        logger.warning("tick %s: %s dropped: the tick is no longer current", ref.tick_id, stage)
        raise Ignore()
    try:
        with _tagged(ref, state), _lock_kept_alive(ref):
            body(ref)
    except Ignore:
        raise
    except Exception as e:
        outcome.fail_tick(ref, state=state, stage=stage, error=e)
        raise Ignore() from e


def _stage(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def run(ref_data: dict[str, Any]) -> dict[str, Any]:
        def body(ref: lifecycle.TickRef) -> None:
            reconcile.run_stage(name, ref, gateway=_gateway, state=_state(), settings=_settings())

        _guarded(ref_data, name, body)
        return ref_data

    run.__name__ = f"{name}_stage"
    return run


snapshot = app.task(name="joulie.snapshot", base=OperatorTask, acks_late=True)(_stage("snapshot"))
classify = app.task(name="joulie.classify", base=OperatorTask, acks_late=True)(_stage("classify"))
plan = app.task(name="joulie.plan", base=OperatorTask, acks_late=True)(_stage("plan"))
guard = app.task(name="joulie.guard", base=OperatorTask, acks_late=True)(_stage("guard"))


@app.task(name="joulie.write", base=OperatorTask, acks_late=True)
def write(ref_data: dict[str, Any]) -> dict[str, Any]:
    """Compute the writes, fan the batches out across workers (or end the tick)."""

    def body(ref: lifecycle.TickRef) -> None:
        state, settings = _state(), _settings()
        batches = reconcile.run_stage(
            "write", ref, gateway=_gateway, state=state, settings=settings
        )
        if not batches:
            _end(ref, state, settings)
            return
        for index in range(batches):
            write_batch.apply_async(args=(ref_data, index))

    _guarded(ref_data, "write", body)
    return ref_data


EVENTS_PER_TASK = 200


def _end(ref: lifecycle.TickRef, state: store.RedisStore, settings: config.Settings) -> None:
    """Finish the tick, then hand its Node events to other tasks (never blocking it)."""
    _flush_requests(state)
    report = outcome.finish_tick(ref, state=state, settings=settings)
    if report is None:
        return
    bodies = outcome.event_bodies(report)
    for start in range(0, len(bodies), EVENTS_PER_TASK):
        try:
            send_events.apply_async(
                args=(bodies[start : start + EVENTS_PER_TASK],),
                expires=settings.reconcile_interval,
            )
        except Exception as e:  # events are best effort; the tick is already done
            logger.warning("tick %s: events not sent: %s", ref.tick_id, e)
            return


@app.task(name="joulie.send_events", base=OperatorTask, acks_late=True, ignore_result=True)
def send_events(bodies: list[dict[str, Any]]) -> int:
    """Record Node events (one attempt each; failures are logged, never retried)."""
    try:
        return events.send_events(bodies, gateway=_gateway())
    finally:
        _flush_requests(_state())


@app.task(name="joulie.write_batch", base=OperatorTask, acks_late=True)
def write_batch(ref_data: dict[str, Any], index: int) -> None:
    """Apply one batch (fenced); the last batch to finish ends the tick."""
    ref = lifecycle.TickRef.model_validate(ref_data)
    state, settings = _state(), _settings()
    try:
        with _tagged(ref, state), _lock_kept_alive(ref):
            result = reconcile.run_batch(
                ref, index, gateway=_gateway(), state=state, settings=settings
            )
            _flush_requests(state)  # before the record that may let the tick end
            if result is not None and outcome.record_batch(ref, index, result, state=state):
                _end(ref, state, settings)
    except Exception as e:
        outcome.fail_tick(ref, state=state, stage=f"write batch {index}", error=e)
        raise Ignore() from e


@app.task(name=TICK_TASK, base=OperatorTask, bind=True, acks_late=True)
def tick(self: Task[Any, Any], scheduled_at: float | None = None, dedup: bool = True) -> str | None:
    """One tick: drop stale ones and duplicates of this interval, take the lock, chain.

    Beat's ticks are deduplicated per interval; a manual tick (``dedup=False``) is not.
    """
    state, settings = _state(), _settings()
    now = time.time()
    scheduled = scheduled_at if scheduled_at is not None else now
    interval = settings.reconcile_interval
    try:
        if now - scheduled > interval:
            state.add_counters(metrics.tick_counted(models.TickResult.EXPIRED))
            logger.info("tick scheduled at %.0f is stale; dropped", scheduled)
            return None
        number = math.floor(scheduled / interval)
        if dedup and not state.claim_interval(number, ttl_s=3 * interval + 60):
            state.add_counters(metrics.tick_counted(models.TickResult.DUPLICATE))
            logger.info("duplicate tick for interval %d dropped", number)
            return None
        ref = lifecycle.begin_tick(state=state, settings=settings, tick_time=scheduled)
    except errors.StateStoreError as e:
        logger.error("tick skipped: %s", e)
        state.count_later(_FAILED)
        # Redis may well answer (a lock no replica acknowledged): count the tick now if so.
        with contextlib.suppress(errors.StateStoreError):
            state.add_counters({})
        return None
    if ref is None:
        return None
    ref_data = ref.model_dump(mode="json")
    try:
        chain(
            snapshot.si(ref_data),
            classify.si(ref_data),
            plan.si(ref_data),
            guard.si(ref_data),
            write.si(ref_data),
        ).apply_async()
    except Exception as e:
        outcome.fail_tick(ref, state=state, stage="dispatch", error=e)
        raise
    return ref.tick_id
