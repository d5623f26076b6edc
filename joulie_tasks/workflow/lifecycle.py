"""A tick's identity and start: its reference, its report, the lock and the fence.

``begin_tick`` takes the leader lock and a fencing token (a Redis counter): the
pair identifies the one tick allowed to write. Everything later runs under the tick's
runner (runner.py), which asks its ``fence.Fence`` before acting, so a tick that lost
its lock (stalled, or its holder died) stops.
Only a ``TickRef`` travels through the broker, never the tick's data.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

from pydantic import ConfigDict

from joulie_tasks import config, ports
from joulie_tasks.core import models
from joulie_tasks.ports import metrics

logger = logging.getLogger(__name__)


class TickRef(models.Frozen):
    """What travels through the broker between stages: a reference, never the data."""

    tick_id: str
    token: int
    tick_time: float
    started_at: float
    dry_run: bool = False
    paused: bool = False


class TickReport(models.TickSummary):
    """The outcome of a finished tick, for logs, the CLI and the last-tick record:
    the last-tick record plus the tick's decisions."""

    # built here, never read back: strict like every other model (not the record's "ignore")
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    decisions: tuple[models.Decision, ...] = ()

    def summary(self) -> models.TickSummary:
        """The last-tick record: this report without its decisions."""
        return models.TickSummary.model_validate(self.model_dump(exclude={"decisions"}))


def holder_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def begin_tick(
    *,
    state: ports.state.StateStore,
    settings: config.Settings,
    tick_time: float,
    dry_run: bool = False,
) -> TickRef | None:
    """Take the leader lock and a fencing token; None (counted) when another tick runs."""
    tick_id = f"{int(tick_time)}-{uuid.uuid4().hex[:10]}"
    token = state.acquire_lock(tick_id, ttl_s=settings.lock_ttl)
    if token is None:
        state.add_counters(metrics.tick_counted(models.TickResult.SKIPPED_LOCKED))
        logger.info("tick skipped: the lock is held by %s", state.lock_holder())
        return None
    increments = metrics.Values()
    if state.swap_leader(holder_identity()):
        increments.add(metrics.LEADER_CHANGES)
    if settings.policy_fell_back:
        increments.add(metrics.POLICY_FALLBACKS)
    state.add_counters(increments.as_dict())
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
