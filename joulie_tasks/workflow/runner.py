"""The tick runner: the one owner of every guarantee a tick keeps (docs/ARCHITECTURE.md).

A :class:`TickRunner` is built from a ``lifecycle.TickRef`` wherever a tick's work runs —
a Celery stage or write batch (queue/tasks.py), or ``joulie-tasks reconcile --once``
(:func:`run_inline`) — and owns, for that work:

- the fence: ``Fence.holds()`` before each stage and each batch, ``still_holds()``
  before each API write and the profile deletes (fence.py);
- lock renewal: a background thread renews the lock every LOCK_TTL/3 while work runs;
- the request tag: every API request carries ``X-Joulie-Tick: <token> <tick id>``
  through a per-tick view of the gateway (``KubeGateway.for_tick``), never a process
  global, so two ticks in one process (or threads of one batch) cannot mix tags;
- counter flushing: the gateway's request counters go to Redis after each piece of
  work and before a batch is recorded or the tick ends;
- finish and fail: ``tick_end.finish_tick`` / ``tick_end.fail_tick``, called only here.

It makes no Celery call: what a dropped or failed piece of work means for a message
(``Ignore``, the next task) is queue/tasks.py's business; stage bodies are reconcile.py's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from joulie_tasks import config, errors, ports
from joulie_tasks.core import models
from joulie_tasks.ports import cluster, metrics
from joulie_tasks.workflow import events, lifecycle, reconcile, tick_end
from joulie_tasks.workflow import fence as fencing

logger = logging.getLogger(__name__)

#: A tick lost to a Redis outage: counted (``StateStore.count_later``) when Redis is back.
FAILED = metrics.tick_counted(models.TickResult.FAILED)


class TickDropped(errors.TickSkipped):
    """Raised when a tick's work is dropped: the tick no longer holds its fence, or the
    fence cannot be asked. Already counted; the tick must not be failed again."""


def tick_tag(ref: lifecycle.TickRef) -> str:
    """The ``X-Joulie-Tick`` value of a tick's requests: ``<token> <tick id>``."""
    return f"{ref.token} {ref.tick_id}"


class TickRunner:
    """Runs one tick's stages and batches under the tick's guarantees.

    ``gateway`` is a factory: stages that make no API request (classify, plan, guard)
    never build a Kubernetes client. ``clock`` is the fence's monotonic clock.
    """

    def __init__(
        self,
        ref: lifecycle.TickRef,
        *,
        gateway: Callable[[], cluster.KubeGateway],
        state: ports.state.StateStore,
        cache: ports.cache.TickCache | None,
        settings: config.Settings,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ref = ref
        self._gateway_factory = gateway
        self._tagged: cluster.KubeGateway | None = None
        self._state = state
        self._cache = cache
        self._settings = settings
        self._sleep = sleep
        self.fence = fencing.Fence(ref, state=state, settings=settings, clock=clock)

    # --- the guarantees ------------------------------------------------------------------

    def gateway(self) -> cluster.KubeGateway:
        """The gateway whose every request names this tick (built on first use)."""
        if self._tagged is None:
            self._tagged = self._gateway_factory().for_tick(tick_tag(self.ref))
        return self._tagged

    def flush(self) -> None:
        """Move the gateway's request counters into the shared metrics (never raises)."""
        if self._tagged is None:
            return
        try:
            flush_requests(self._tagged, self._state)
        except errors.StateStoreError as e:
            logger.warning("tick %s: cannot flush request counters: %s", self.ref.tick_id, e)

    def fail(self, *, stage: str, error: BaseException) -> None:
        """Count the tick failed and release its lock (once, whoever calls first)."""
        tick_end.fail_tick(self.ref, state=self._state, stage=stage, error=error)

    def finish(self) -> lifecycle.TickReport | None:
        """End the tick exactly once; None when it was finished elsewhere."""
        self.flush()  # a finished tick's request counters are whole
        return tick_end.finish_tick(
            self.ref, state=self._state, cache=self._cache, settings=self._settings
        )

    def _require_fence(self, stage: str) -> None:
        """Drop the stage (counted ``expired``) unless the tick holds the newest fence."""
        try:
            live = self.fence.holds()
        except errors.StateStoreError as e:
            logger.error("tick %s: %s skipped: %s", self.ref.tick_id, stage, e)
            self._state.count_later(FAILED)  # the work ends here; counted once Redis is back
            raise TickDropped(f"{stage}: the fence cannot be asked: {e}") from e
        if not live:
            self._state.add_counters(metrics.tick_counted(models.TickResult.EXPIRED))
            logger.warning(
                "tick %s: %s dropped: the tick is no longer current", self.ref.tick_id, stage
            )
            raise TickDropped(f"{stage}: the tick is no longer current")

    @contextmanager
    def _kept_alive(self) -> Iterator[None]:
        """Renew the leader lock in the background while work runs."""
        stop = threading.Event()
        ttl = self._settings.lock_ttl

        def renew() -> None:
            while not stop.wait(ttl / 3):
                try:
                    if not self._state.renew_lock(self.ref.tick_id, ttl_s=ttl):
                        return
                except errors.StateStoreError as e:
                    logger.warning("tick %s: cannot renew the lock: %s", self.ref.tick_id, e)

        thread = threading.Thread(target=renew, name="lock-renewal", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    @contextmanager
    def _owned(self, stage: str) -> Iterator[None]:
        """Work under the lock's renewal; any error fails the tick (and is re-raised);
        the request counters are flushed afterwards."""
        try:
            with self._kept_alive():
                yield
        except TickDropped:
            raise
        except BaseException as e:
            self.fail(stage=stage, error=e)
            raise
        finally:
            self.flush()

    # --- the work ------------------------------------------------------------------------

    def stage(self, name: str) -> int | None:
        """Run one stage of reconcile.STAGES if the tick still holds its fence.

        Returns what the stage returns (``write``: the batch count). Raises TickDropped
        when fenced off; any other error fails the tick and is re-raised.
        """
        self._require_fence(name)
        with self._owned(name):
            return reconcile.run_stage(
                name,
                self.ref,
                gateway=self.gateway,
                state=self._state,
                cache=self._cache,
                settings=self._settings,
            )

    def write(self, *, dispatch: Callable[[int], None]) -> lifecycle.TickReport | None:
        """The write stage, then ``dispatch(index)`` for each batch, or, with no batch,
        the tick's end (its report). A failing dispatch fails the tick."""
        self._require_fence("write")
        with self._owned("write"):
            batches = reconcile.run_stage(
                "write",
                self.ref,
                gateway=self.gateway,
                state=self._state,
                cache=self._cache,
                settings=self._settings,
            )
            if not batches:
                return self.finish()
            for index in range(batches):
                dispatch(index)
            return None

    def batch(self, index: int) -> lifecycle.TickReport | None:
        """Apply write batch ``index`` if the tick still holds its fence; the report when
        it was the tick's last batch, else None.

        Raises TickDropped (counted ``fenced``) when the fence is lost before or during
        the batch; the writes after the loss are not sent.
        """
        with self._owned(f"write batch {index}"):
            if not self.fence.holds():
                self._state.add_counters(metrics.tick_counted(models.TickResult.FENCED))
                logger.warning(
                    "tick %s: batch %d dropped: the tick lost its lock", self.ref.tick_id, index
                )
                raise TickDropped(f"batch {index}: the tick lost its lock")
            result = reconcile.apply_batch(
                self.ref,
                index,
                gateway=self.gateway(),
                state=self._state,
                cache=self._cache,
                settings=self._settings,
                fence_holds=self.fence.still_holds,
                sleep=self._sleep,
            )
            if result.fenced_off:
                self._state.add_counters(metrics.tick_counted(models.TickResult.FENCED))
                logger.warning(
                    "tick %s: batch %d cut short: the tick lost its lock", self.ref.tick_id, index
                )
                raise TickDropped(f"batch {index}: the tick lost its lock while writing")
            self.flush()  # before the record that may let the tick end
            if tick_end.record_batch(self.ref, index, result, state=self._state):
                return self.finish()
            return None


def run_inline(
    *,
    gateway: cluster.KubeGateway,
    state: ports.state.StateStore,
    cache: ports.cache.TickCache | None,
    settings: config.Settings,
    tick_time: float,
    dry_run: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> lifecycle.TickReport:
    """One whole tick in this process (``reconcile --once``): the same stages, lock,
    fence, renewal, request tag and FSM as a tick through Celery.

    Raises TickSkipped when another tick holds the lock, TickDropped when this one
    loses it midway (no write is sent after the loss).
    """
    ref = lifecycle.begin_tick(state=state, settings=settings, tick_time=tick_time, dry_run=dry_run)
    if ref is None:
        raise errors.TickSkipped(f"another tick holds the lock ({state.lock_holder()})")
    runner = TickRunner(
        ref,
        gateway=lambda: gateway,
        state=state,
        cache=cache,
        settings=settings,
        clock=clock,
        sleep=sleep,
    )
    for name in reconcile.STAGES[:-1]:
        runner.stage(name)
    pending: list[int] = []
    report = runner.write(dispatch=pending.append)
    for index in pending:
        try:
            report = runner.batch(index)
        except TickDropped as e:
            # As before the runner: a tick run in this process that loses its lock while
            # writing is also counted failed (and its lock released if still its own).
            runner.fail(stage=f"write batch {index}", error=e)
            raise
    if report is None:
        raise errors.TickSkipped("the tick was finished elsewhere")
    events.send_events(tick_end.event_bodies(report), gateway=gateway)
    return report


def flush_requests(gateway: cluster.KubeGateway, state: ports.state.StateStore) -> None:
    """Move the gateway's request counters into the shared metric hash."""
    counts = gateway.take_request_counts()
    increments = metrics.Values()
    for (verb, resource, status), n in counts.items():
        increments.add(metrics.KUBE_REQUESTS, n, verb=verb, resource=resource, outcome=status)
        if status == "409":
            increments.add(metrics.KUBE_CONFLICTS, n)
    state.add_counters(increments.as_dict())
