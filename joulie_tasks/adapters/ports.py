"""Ports: the interfaces the workflow talks to the outside world through.

``KubeGateway`` (implemented by ``kube.ApiGateway``) reads and writes the cluster;
``StateStore`` (implemented by ``store.RedisStore``) keeps the tick's state. The
workflow is typed against these, never against an adapter class, so a test can run
it over in-memory fakes (``tests/fakes.py``). No I/O here.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from joulie_tasks.core import models

ModelT = TypeVar("ModelT", bound=BaseModel)

RequestKey = tuple[str, str, str]  # (verb, resource, outcome)


@dataclass(frozen=True)
class Resource:
    """A REST collection: its URL prefix and plural name (for request counters)."""

    prefix: str
    plural: str
    namespaced: bool = False

    def path(self, name: str | None = None, *, namespace: str | None = None) -> str:
        base = self.prefix
        if self.namespaced and namespace is not None:
            base = f"{base}/namespaces/{namespace}"
        base = f"{base}/{self.plural}"
        return f"{base}/{name}" if name is not None else base


class KubeGateway(Protocol):
    """The port stages use to read and write the cluster."""

    request_counts: collections.Counter[RequestKey]

    def list_items(self, resource: Resource, *, page_size: int) -> Iterator[dict[str, Any]]: ...

    def list_all(
        self, resource: Resource, *, page_size: int, field_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]: ...

    def get(self, resource: Resource, name: str) -> dict[str, Any] | None: ...

    def patch_node_labels(
        self, name: str, labels: Mapping[str, str], *, dry_run: bool = False
    ) -> dict[str, Any]: ...

    def upsert_profile(
        self, body: Mapping[str, Any], *, exists: bool, dry_run: bool = False
    ) -> None:
        """Create the NodePowerProfile (``exists`` False) or replace it at the body's
        ``metadata.resourceVersion``; a conflict is ``KubeConflict``, a vanished
        object under a replace ``KubeFatal`` with status 404."""
        ...

    def create_event(self, namespace: str, body: Mapping[str, Any]) -> None: ...

    def delete_profile(self, name: str) -> None: ...

    def upsert_twin(self, body: Mapping[str, Any], *, exists: bool, dry_run: bool = False) -> None:
        """Create or replace a NodeTwin's spec, with upsert_profile's error contract."""
        ...

    def patch_twin_status(
        self, name: str, status: Mapping[str, Any], *, dry_run: bool = False
    ) -> None: ...

    def delete_twin(self, name: str) -> None: ...

    def take_request_counts(self) -> collections.Counter[RequestKey]:
        """Return and reset the request counters (flushed to Redis by the tick runner)."""
        ...

    def for_tick(self, tag: str) -> KubeGateway:
        """This gateway for one tick: the same connections and request counters, every
        request named by ``tag`` (the ``X-Joulie-Tick`` header, workflow/runner.py)."""
        ...


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

    def fsm_records(self) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    def read_transitions(self, *, since_ms: int = 0, count: int = 10_000) -> list[dict[str, str]]:
        raise NotImplementedError

    def recent_ticks(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def last_tick(self) -> dict[str, Any] | None:
        raise NotImplementedError

    # --- the same records, typed ---------------------------------------------------------

    def fsm(self) -> dict[str, models.FsmRecord]:
        """The FSM records as models, by node."""
        return {n: models.FsmRecord.model_validate(r) for n, r in self.fsm_records().items()}

    def transitions(self, *, since_ms: int = 0) -> list[models.TransitionEntry]:
        """The transition stream from ``since_ms`` on, oldest first, as models."""
        return [
            models.TransitionEntry.model_validate(e)
            for e in self.read_transitions(since_ms=since_ms)
        ]

    def tick_summary(self) -> models.TickSummary | None:
        """The last finished tick, or None before the first."""
        last = self.last_tick()
        return None if last is None else models.TickSummary.model_validate(last)

    def tick_summaries(self) -> list[models.TickSummary]:
        """The recent finished ticks, newest first."""
        return [models.TickSummary.model_validate(t) for t in self.recent_ticks()]

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


class StateStore(Protocol):
    """The port the workflow keeps its state behind: the lock and fencing token, per-tick
    data, write batches, the FSM record, transitions, metric values, the tick records.
    ``adapters.store.RedisStore`` is the production one, ``MemoryStateStore`` (tests) the
    other; ``tests/contract`` holds both to the same behaviour."""

    def close(self) -> None: ...
    def ping(self) -> None: ...
    def claim_interval(self, interval_number: int, *, ttl_s: float) -> bool: ...
    def acquire_lock(self, tick_id: str, *, ttl_s: float) -> int | None: ...
    def swap_leader(self, identity: str) -> bool: ...
    def lock_holder(self) -> str | None: ...
    def renew_lock(self, tick_id: str, *, ttl_s: float) -> bool: ...
    def release_lock(self, tick_id: str) -> bool: ...
    def holds_fence(self, tick_id: str, token: int, *, ttl_s: float) -> bool: ...
    def latest_tick(self) -> str | None: ...
    def fsm(self) -> dict[str, models.FsmRecord]: ...
    def transitions(self, *, since_ms: int = 0) -> list[models.TransitionEntry]: ...
    def tick_summary(self) -> models.TickSummary | None: ...
    def tick_summaries(self) -> list[models.TickSummary]: ...
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
    def start_batches(self, tick_id: str, count: int) -> None: ...
    def writes_started(self, tick_id: str) -> float | None: ...
    def finish_batch(
        self,
        tick_id: str,
        index: int,
        *,
        failures: Mapping[str, str],
        written: int,
        retries: int,
        counters: Mapping[str, float] | None = None,
    ) -> int | None: ...
    def add_skipped(self, tick_id: str, skipped: Mapping[str, str]) -> None: ...
    def skipped_nodes(self, tick_id: str) -> set[str]: ...
    def batch_results(self, tick_id: str) -> tuple[dict[str, str], int, int]: ...
    def mark(self, tick_id: str, flag: str) -> bool: ...
    def fsm_records(self) -> dict[str, dict[str, Any]]: ...
    def update_fsm(
        self,
        token: int,
        records: Mapping[str, Mapping[str, Any]],
        *,
        spend: Spend | None = None,
    ) -> int: ...
    def downgrades_since(self, since: float) -> int: ...
    def forget_nodes(self, nodes: Iterable[str]) -> None: ...
    def append_transitions(self, entries: Sequence[Mapping[str, str]], *, maxlen: int) -> None: ...
    def read_transitions(
        self, *, since_ms: int = 0, count: int = 10_000
    ) -> list[dict[str, str]]: ...
    def add_counters(self, increments: Mapping[str, float]) -> None: ...
    def count_later(self, increments: Mapping[str, float]) -> None: ...
    def set_gauges(self, values: Mapping[str, float]) -> None: ...
    def read_metric_values(self) -> tuple[dict[str, float], dict[str, float]]: ...
    def set_last_tick(self, summary: Mapping[str, Any]) -> None: ...
    def recent_ticks(self) -> list[dict[str, Any]]: ...
    def last_tick(self) -> dict[str, Any] | None: ...
    def set_paused(self, paused: bool) -> None: ...
    def is_paused(self) -> bool: ...
