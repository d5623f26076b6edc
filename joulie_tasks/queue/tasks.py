"""Thin Celery task wrappers: the tick, one task per stage, and the write batches.

A tick is ``tick`` (dedup + lock) → chain ``snapshot → classify → plan → guard →
write`` → ``write_batch`` (N of them). Messages carry only a TickRef (ids, token, time);
the data stays in Redis (store.py). Every other task validates the TickRef and calls
the tick's runner (workflow/runner.py), which owns the tick's guarantees: the fence
before each stage, batch and write, lock renewal, the request tag, counter flushing,
finish and fail, exactly as for ``reconcile --once``. What is left here is Celery's:
the chain, fanning the batches out, ``Ignore`` for work dropped or failed (the runner
has counted it), the per-process clients and the Node-event tasks.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

from celery import Task, chain, signals
from celery.exceptions import Ignore

from joulie_tasks import config, errors
from joulie_tasks.adapters import cache_store, clients, kube, store
from joulie_tasks.core import models
from joulie_tasks.ports import metrics
from joulie_tasks.queue.celery_app import TICK_TASK, app
from joulie_tasks.workflow import events, lifecycle, runner, tick_end

logger = logging.getLogger(__name__)


class ProcessResources:
    """The clients one worker process owns: a Redis store, the watch cache on it and a
    Kubernetes gateway, built by the wiring root (adapters/clients.py) on first use and
    never shared across fork() (a pid change drops them)."""

    def __init__(self) -> None:
        self._pid: int | None = None
        self._state: store.RedisStore | None = None
        self._cache: cache_store.CacheStore | None = None
        self._gateway: kube.ApiGateway | None = None

    def reset(self) -> None:
        self._pid, self._state, self._cache, self._gateway = os.getpid(), None, None, None

    def _check_pid(self) -> None:
        if self._pid != os.getpid():
            self.reset()

    def state(self) -> store.RedisStore:
        self._check_pid()
        if self._state is None:
            self._state = clients.redis_store(_settings())
        return self._state

    def cache(self) -> cache_store.CacheStore:
        self._check_pid()
        if self._cache is None:
            self._cache = clients.cache(self.state())
        return self._cache

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


def _runner(ref_data: dict[str, Any]) -> runner.TickRunner:
    """Validate the tick reference and build its runner over this process's clients."""
    ref = lifecycle.TickRef.model_validate(ref_data)
    return runner.TickRunner(
        ref,
        gateway=_gateway,
        state=_state(),
        cache=OperatorTask.resources.cache(),
        settings=_settings(),
    )


def _stage(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def run(ref_data: dict[str, Any]) -> dict[str, Any]:
        tick = _runner(ref_data)
        try:
            tick.stage(name)
        except Exception as e:  # dropped (counted) or failed (the runner failed the tick)
            raise Ignore() from e
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

    def dispatch(index: int) -> None:
        write_batch.apply_async(args=(ref_data, index))

    tick = _runner(ref_data)
    try:
        report = tick.write(dispatch=dispatch)
    except Exception as e:  # dropped (counted) or failed (the runner failed the tick)
        raise Ignore() from e
    _send_events(report)
    return ref_data


EVENTS_PER_TASK = 200


def _send_events(report: lifecycle.TickReport | None) -> None:
    """Hand a finished tick's Node events to other tasks (never blocking the tick)."""
    if report is None:
        return
    bodies = tick_end.event_bodies(report)
    for start in range(0, len(bodies), EVENTS_PER_TASK):
        try:
            send_events.apply_async(
                args=(bodies[start : start + EVENTS_PER_TASK],),
                expires=_settings().reconcile_interval,
            )
        except Exception as e:  # events are best effort; the tick is already done
            logger.warning("tick %s: events not sent: %s", report.tick_id, e)
            return


@app.task(name="joulie.send_events", base=OperatorTask, acks_late=True, ignore_result=True)
def send_events(bodies: list[dict[str, Any]]) -> int:
    """Record Node events (one attempt each; failures are logged, never retried)."""
    try:
        return events.send_events(bodies, gateway=_gateway())
    finally:
        _flush_requests()


def _flush_requests() -> None:
    """Move this process's API request counters (if it built a gateway) into the metrics."""
    gateway = OperatorTask.resources.built_gateway()
    if gateway is not None:
        try:
            runner.flush_requests(gateway, _state())
        except errors.StateStoreError as e:
            logger.warning("cannot flush request counters: %s", e)


@app.task(name="joulie.write_batch", base=OperatorTask, acks_late=True)
def write_batch(ref_data: dict[str, Any], index: int) -> None:
    """Apply one batch (fenced); the last batch to finish ends the tick."""
    tick = _runner(ref_data)
    try:
        report = tick.batch(index)
    except runner.TickDropped:
        return  # fenced off: counted, nothing more to do
    except Exception as e:  # the runner failed the tick
        raise Ignore() from e
    _send_events(report)


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
        state.count_later(runner.FAILED)
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
        runner.TickRunner(
            ref,
            gateway=_gateway,
            state=state,
            cache=OperatorTask.resources.cache(),
            settings=settings,
        ).fail(stage="dispatch", error=e)
        raise
    return ref.tick_id
