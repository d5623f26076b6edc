"""Sending ticks through the broker like beat does, and reading what they did."""

from __future__ import annotations

import time
from typing import Any

from celery import Celery

from joulie_tasks.adapters import store
from joulie_tasks.ports import metrics
from joulie_testbed.procs import wait_for


class TickSender:
    """Sends ``joulie.tick`` (JSON, via Redis) and waits for its summary in the store."""

    def __init__(self, redis_url: str) -> None:
        self.app = Celery("joulie-bench-client", broker=redis_url)
        self.app.conf.update(task_serializer="json", accept_content=["json"])
        self.state = store.RedisStore(redis_url)

    def close(self) -> None:
        self.app.close()
        self.state.close()

    def run(self, *, timeout: float) -> dict[str, Any]:
        """One manual tick, start to end; returns its summary (duration_s, written...)."""
        at = time.time()
        self.app.send_task("joulie.tick", kwargs={"scheduled_at": at, "dedup": False})

        def finished() -> dict[str, Any] | None:
            last = self.state.tick_summary()
            if last is not None and last.tick_time == at:
                return last.model_dump(mode="json")
            return None

        # The tick's own clock (duration_s) is what is reported; polling only needs to
        # notice the end, and must not take CPU from the workers.
        summary = wait_for(finished, timeout=timeout, interval=0.02, what=f"tick at {at}")
        if summary.get("failures"):
            raise RuntimeError(f"tick had write failures: {list(summary['failures'])[:3]}")
        return summary

    def stage_seconds(self) -> dict[str, float]:
        """Cumulative stage durations from the tick-duration histogram (sum per stage)."""
        counters, _ = self.state.metric_values()
        out: dict[str, float] = {}
        for key, value in counters.items():
            name, labels = metrics.parse_field(key)
            if name == metrics.TICK_DURATION + "_sum":
                out[labels.get("stage", "?")] = value
        return out


def wait_idle(client: Any, *, timeout: float, queue: str = "celery") -> None:
    """Wait until the broker queue is empty and no message is unacknowledged.

    Node events are sent by their own tasks after a tick ends; the next measured
    tick must not share the CPU with them.
    """

    def idle() -> bool:
        return int(client.llen(queue)) == 0 and int(client.hlen("unacked")) == 0

    wait_for(idle, timeout=timeout, interval=0.02, what="an idle broker")
