"""Sending ticks through the broker like beat does, and reading what they did.

Shared by the tests (``TickClient``: the ``ticks`` fixture, the chaos ``Driver``) and
the benchmarks (``TickSender``, ``wait_idle``). A tick message is JSON through the
Redis broker, exactly what beat sends; what became of it is read from the operator's
own records in Redis (finished-tick list, last tick, counters), never guessed.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Celery

from joulie_tasks.adapters import store
from joulie_tasks.ports import metrics
from joulie_testbed.procs import wait_for


class TickClient:
    """Sends ``joulie.tick`` messages and awaits them in ``state``."""

    def __init__(self, redis_url: str, state: store.RedisStore) -> None:
        self.app = Celery("joulie-test-client", broker=redis_url)
        self.app.conf.update(task_serializer="json", accept_content=["json"])
        self.state = state

    def close(self) -> None:
        self.app.close()

    def send(self, *, dedup: bool = False, scheduled_at: float | None = None, **opts: Any) -> float:
        """Send one tick (a manual one unless ``dedup``); returns its tick time."""
        at = scheduled_at if scheduled_at is not None else time.time()
        self.app.send_task("joulie.tick", kwargs={"scheduled_at": at, "dedup": dedup}, **opts)
        return at

    def finished(self, at: float) -> dict[str, Any] | None:
        """The summary of the tick sent at ``at`` once it finished, else None."""
        summaries = self.state.tick_summaries()
        return next((t.model_dump(mode="json") for t in summaries if t.tick_time == at), None)

    def run(self, *, timeout: float = 60.0) -> dict[str, Any]:
        """Send one manual tick and wait until it has finished; return its summary."""
        at = self.send()
        return wait_for(lambda: self.finished(at), timeout=timeout, what=f"tick at {at}")

    def run_until_quiet(self, *, limit: int = 6) -> list[dict[str, Any]]:
        """Run ticks until one runs quiet (docs/SPEC.md §9.10); each tick is the poll,
        the watcher catching up with the last one's writes in between. The summaries,
        the quiet one last; AssertionError when none is quiet within ``limit``."""
        summaries: list[dict[str, Any]] = []
        for _ in range(limit):
            summaries.append(self.run())
            if summaries[-1]["quiet"]:
                return summaries
        raise AssertionError(f"no quiet tick in {limit}: {summaries}")

    def counter(self, name: str, **labels: str) -> float:
        counters, _ = self.state.metric_values()
        return counters.get(metrics.field(name, **labels), 0.0)


class TickSender(TickClient):
    """The benchmarks' client: owns its store, and reads only the last tick (cheap to
    poll, since a benchmark runs one tick at a time)."""

    def __init__(self, redis_url: str) -> None:
        super().__init__(redis_url, store.RedisStore(redis_url))

    def close(self) -> None:
        super().close()
        self.state.close()

    def run(self, *, timeout: float = 60.0) -> dict[str, Any]:
        """One manual tick, start to end; returns its summary (duration_s, written...).
        Raises RuntimeError when the tick had write failures."""
        at = self.send()

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
