"""The state port: what the workflow keeps between stages, batches and ticks.

Small protocols named for what they do — the leader lock and fence, a tick's data,
its write batches, the FSM, the metrics sink and values, the tick records, the pause
switch — so a function asks for the part it uses; ``StateStore`` is all of them, as
``adapters.store.RedisStore`` (production) and ``tests/fakes.py``'s
``MemoryStateStore`` implement it; ``tests/contract`` holds both to the same
behaviour. No I/O here, and no key: the Redis layout is the store's business.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar

from pydantic import BaseModel

from joulie_tasks.core import models

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True)
class BatchDone:
    """What one finished write batch leaves: its failed nodes (node → reason), the API
    writes it made, the retries they took, and the metric increments it counted (added
    with the batch, in the same transaction)."""

    failures: Mapping[str, str] = field(default_factory=dict)
    written: int = 0
    retries: int = 0
    counters: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Spend:
    """Downgrades a finishing tick enters in the budget ledger with its FSM records:
    ``nodes`` at score ``time`` as ``tick_id/node``; entries before ``keep_after`` go."""

    nodes: tuple[str, ...]
    time: float
    keep_after: float
    tick_id: str


class TickParts:
    """Typed records (FSM, transitions, tick summaries) and typed per-tick data: one
    save/load pair per stage output, so no caller names a part. A store implements the
    raw readers and ``_save_part``/``_load_part`` (keyed by the part names below, the
    Redis key suffixes ``joulie:tick:{id}:{part}``); ``_load_part`` raises
    ``errors.StateStoreError`` when the part is missing."""

    def _save_part(self, tick_id: str, part: str, model: BaseModel) -> None:
        raise NotImplementedError

    def _load_part(self, tick_id: str, part: str, model_type: type[ModelT]) -> ModelT:
        raise NotImplementedError

    # --- raw records (each store implements these) -------------------------------------

    def _fsm_records(self) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    def _read_transitions(self, *, since_ms: int = 0, count: int = 10_000) -> list[dict[str, str]]:
        raise NotImplementedError

    def _recent_ticks(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _last_tick(self) -> dict[str, Any] | None:
        raise NotImplementedError

    # --- the same records, typed ---------------------------------------------------------

    def fsm(self) -> dict[str, models.FsmRecord]:
        """The FSM records as models, by node."""
        return {n: models.FsmRecord.model_validate(r) for n, r in self._fsm_records().items()}

    def transitions(self, *, since_ms: int = 0) -> list[models.TransitionEntry]:
        """The transition stream from ``since_ms`` on, oldest first, as models."""
        return [
            models.TransitionEntry.model_validate(e)
            for e in self._read_transitions(since_ms=since_ms)
        ]

    def tick_summary(self) -> models.TickSummary | None:
        """The last finished tick, or None before the first."""
        last = self._last_tick()
        return None if last is None else models.TickSummary.model_validate(last)

    def tick_summaries(self) -> list[models.TickSummary]:
        """The recent finished ticks, newest first."""
        return [models.TickSummary.model_validate(t) for t in self._recent_ticks()]

    # --- per-tick parts ------------------------------------------------------------------

    def save_snapshot(self, tick_id: str, snap: models.Snapshot) -> None:
        self._save_part(tick_id, "snapshot", snap)

    def load_snapshot(self, tick_id: str) -> models.Snapshot:
        return self._load_part(tick_id, "snapshot", models.Snapshot)

    def save_nodes(self, tick_id: str, snap: models.Snapshot) -> None:
        """The snapshot without its pods (what plan, guard and write read)."""
        self._save_part(tick_id, "snapshot-nodes", snap)

    def load_nodes(self, tick_id: str) -> models.Snapshot:
        return self._load_part(tick_id, "snapshot-nodes", models.Snapshot)

    def save_demand(self, tick_id: str, demand: models.Demand) -> None:
        self._save_part(tick_id, "demand", demand)

    def load_demand(self, tick_id: str) -> models.Demand:
        return self._load_part(tick_id, "demand", models.Demand)

    def save_plan(self, tick_id: str, plan: models.Plan) -> None:
        self._save_part(tick_id, "plan", plan)

    def load_plan(self, tick_id: str) -> models.Plan:
        return self._load_part(tick_id, "plan", models.Plan)

    def save_guarded(self, tick_id: str, guarded: models.GuardedPlan) -> None:
        self._save_part(tick_id, "guarded", guarded)

    def load_guarded(self, tick_id: str) -> models.GuardedPlan:
        return self._load_part(tick_id, "guarded", models.GuardedPlan)

    def save_writes(self, tick_id: str, writes: models.WriteSet) -> None:
        self._save_part(tick_id, "writes", writes)

    def load_writes(self, tick_id: str) -> models.WriteSet:
        return self._load_part(tick_id, "writes", models.WriteSet)

    def save_batch(self, tick_id: str, index: int, batch: models.WriteSet) -> None:
        self._save_part(tick_id, f"batch:{index}", batch)

    def load_batch(self, tick_id: str, index: int) -> models.WriteSet:
        return self._load_part(tick_id, f"batch:{index}", models.WriteSet)

    def save_cache_mark(self, tick_id: str, mark: models.CacheMark) -> None:
        self._save_part(tick_id, "cache-mark", mark)

    def load_cache_mark(self, tick_id: str) -> models.CacheMark:
        return self._load_part(tick_id, "cache-mark", models.CacheMark)


class LeaderLock(Protocol):
    """The tick lock and its fencing token (docs/SPEC.md §9)."""

    def claim_interval(self, interval_number: int, *, ttl_s: float) -> bool: ...
    def acquire_lock(self, tick_id: str, *, ttl_s: float) -> int | None: ...
    def swap_leader(self, identity: str) -> bool: ...
    def lock_holder(self) -> str | None: ...
    def renew_lock(self, tick_id: str, *, ttl_s: float) -> bool: ...
    def release_lock(self, tick_id: str) -> bool: ...
    def holds_fence(self, tick_id: str, token: int, *, ttl_s: float) -> bool: ...
    def latest_tick(self) -> str | None: ...


class TickData(Protocol):
    """Each stage's output, saved under the tick id for the next stage."""

    def save_snapshot(self, tick_id: str, snap: models.Snapshot) -> None: ...
    def load_snapshot(self, tick_id: str) -> models.Snapshot: ...
    def save_nodes(self, tick_id: str, snap: models.Snapshot) -> None: ...
    def load_nodes(self, tick_id: str) -> models.Snapshot: ...
    def save_demand(self, tick_id: str, demand: models.Demand) -> None: ...
    def load_demand(self, tick_id: str) -> models.Demand: ...
    def save_plan(self, tick_id: str, plan: models.Plan) -> None: ...
    def load_plan(self, tick_id: str) -> models.Plan: ...
    def save_guarded(self, tick_id: str, guarded: models.GuardedPlan) -> None: ...
    def load_guarded(self, tick_id: str) -> models.GuardedPlan: ...
    def save_writes(self, tick_id: str, writes: models.WriteSet) -> None: ...
    def load_writes(self, tick_id: str) -> models.WriteSet: ...
    def save_batch(self, tick_id: str, index: int, batch: models.WriteSet) -> None: ...
    def load_batch(self, tick_id: str, index: int) -> models.WriteSet: ...
    def save_cache_mark(self, tick_id: str, mark: models.CacheMark) -> None: ...
    def load_cache_mark(self, tick_id: str) -> models.CacheMark: ...


class WriteBatches(Protocol):
    """A tick's write batches: how many remain, what each wrote, failed or skipped."""

    def start_batches(self, tick_id: str, count: int) -> None: ...
    def writes_started(self, tick_id: str) -> float | None: ...
    def finish_batch(self, tick_id: str, index: int, done: BatchDone) -> int | None: ...
    def add_skipped(self, tick_id: str, skipped: Mapping[str, str]) -> None: ...
    def skipped_nodes(self, tick_id: str) -> set[str]: ...
    def batch_results(self, tick_id: str) -> tuple[dict[str, str], int, int]: ...
    def mark(self, tick_id: str, flag: str) -> bool: ...


class FsmStore(Protocol):
    """The per-node FSM records, the downgrade-budget ledger and the converged record
    (docs/SPEC.md §9.10), all written by one fenced call at the end of a tick."""

    def fsm(self) -> dict[str, models.FsmRecord]: ...
    def update_fsm(
        self,
        token: int,
        records: Mapping[str, Mapping[str, Any]],
        *,
        spend: Spend | None = None,
        converged: models.Converged | None = None,
        forget: Sequence[str] = (),
    ) -> int: ...
    def converged(self) -> models.Converged | None: ...
    def downgrades_since(self, since: float) -> int: ...


class MetricsSink(Protocol):
    """Where every process leaves its metric increments (ports/metrics.py names them)."""

    def add_counters(self, increments: Mapping[str, float]) -> None: ...
    def count_later(self, increments: Mapping[str, float]) -> None: ...
    def set_gauges(self, values: Mapping[str, float]) -> None: ...


class MetricReadings(NamedTuple):
    """Every metric value in the store: counters (and histogram series) and gauges, by
    Redis field (ports/metrics.py ``field``)."""

    counters: dict[str, float]
    gauges: dict[str, float]


class MetricValues(Protocol):
    """The metric values every process left, as the metrics process reads them."""

    def metric_values(self) -> MetricReadings: ...


class TickRecords(Protocol):
    """What finished ticks leave: the transition stream and the tick summaries."""

    def append_transitions(self, entries: Sequence[Mapping[str, str]], *, maxlen: int) -> None: ...
    def transitions(self, *, since_ms: int = 0) -> list[models.TransitionEntry]: ...
    def set_last_tick(self, summary: Mapping[str, Any]) -> None: ...
    def tick_summary(self) -> models.TickSummary | None: ...
    def tick_summaries(self) -> list[models.TickSummary]: ...


class Pause(Protocol):
    """The operator-wide pause switch (``joulie-tasks pause``)."""

    def set_paused(self, paused: bool) -> None: ...
    def is_paused(self) -> bool: ...


class StateStore(
    LeaderLock,
    TickData,
    WriteBatches,
    FsmStore,
    MetricsSink,
    MetricValues,
    TickRecords,
    Pause,
    Protocol,
):
    """All of the state ports: what a tick runner or a process entry point holds."""

    def close(self) -> None: ...
    def ping(self) -> None: ...
