"""Fakes at our ports, for unit tests of the effectful stage code.

FakeKube implements the KubeGateway protocol in memory. Its limits, on purpose:
no resourceVersion checks unless a test scripts a 409; no selectors, pagination
or validation; objects are plain dicts. Anything claiming Kubernetes semantics is
tested against the HTTP emulator instead (tests/integration).

MemoryStateStore implements the StateStore port in memory, held to the same behaviour
as RedisStore by one contract suite (tests/contract). Its limits: one process only
(no sharing between workers), no Sentinel or replica acknowledgement, per-tick data
never expires (Redis drops it after an hour), the transition stream is cut exactly at
``maxlen`` (Redis trims approximately). Time for the lock's lifetime comes from an
injectable clock, so a test expires a lock without sleeping.
"""

from __future__ import annotations

import collections
import copy
import itertools
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

from joulie_tasks import errors, ports
from joulie_tasks.core import models
from joulie_tasks.ports import cluster


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, str]] = []  # (verb, resource, name)
        self.script: dict[tuple[str, str], list[Exception]] = collections.defaultdict(list)
        self.request_counts: collections.Counter[cluster.RequestKey] = collections.Counter()
        self.tick_tags: list[str] = []

    def take_request_counts(self) -> collections.Counter[cluster.RequestKey]:
        counts, self.request_counts = self.request_counts, collections.Counter()
        return counts

    def for_tick(self, tag: str) -> FakeKube:
        """The same fake (no headers to carry); the tags asked for are kept in order."""
        self.tick_tags.append(tag)
        return self

    def fail(self, verb: str, resource: str, *errs: Exception) -> None:
        """The next calls of ``verb`` on ``resource`` raise these errors, in order."""
        self.script[(verb, resource)].extend(errs)

    def _maybe_fail(self, verb: str, resource: str) -> None:
        queue = self.script.get((verb, resource))
        if queue:
            raise queue.pop(0)

    @classmethod
    def with_nodes(cls, *nodes: dict[str, Any]) -> FakeKube:
        """A fake cluster holding ``nodes`` (Node manifests) and nothing else."""
        fake = cls()
        for manifest in nodes:
            fake.add("nodes", manifest)
        return fake

    def add(self, resource: str, obj: dict[str, Any]) -> None:
        self.objects[(resource, obj["metadata"]["name"])] = obj

    def list_items(self, resource: cluster.Resource, *, page_size: int) -> Iterator[dict[str, Any]]:
        self._maybe_fail("list", resource.plural)
        yield from [o for (r, _), o in self.objects.items() if r == resource.plural]

    def list_all(
        self, resource: cluster.Resource, *, page_size: int, field_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        items = list(self.list_items(resource, page_size=page_size))
        if field_selector and field_selector.startswith("spec.nodeName="):
            node = field_selector.split("=", 1)[1]
            items = [o for o in items if (o.get("spec") or {}).get("nodeName") == node]
        return items, "1"

    def list_pages(
        self, resource: cluster.Resource, *, page_size: int, field_selector: str | None = None
    ) -> Iterator[tuple[list[dict[str, Any]], str]]:
        items, rv = self.list_all(resource, page_size=page_size, field_selector=field_selector)
        for start in range(0, max(len(items), 1), page_size):
            yield items[start : start + page_size], rv

    def get(self, resource: cluster.Resource, name: str) -> dict[str, Any] | None:
        self._maybe_fail("get", resource.plural)
        return self.objects.get((resource.plural, name))

    def patch_node_labels(
        self, name: str, labels: Mapping[str, str], *, dry_run: bool = False
    ) -> dict[str, Any]:
        self._maybe_fail("patch", "nodes")
        node = self.objects.get(("nodes", name))
        if node is None:
            raise errors.KubeFatal(f"node {name} not found", status=404)
        self.writes.append(("patch", "nodes", name))
        node["metadata"].setdefault("labels", {}).update(labels)
        return node

    def upsert_profile(
        self, body: Mapping[str, Any], *, exists: bool, dry_run: bool = False
    ) -> None:
        if exists:
            self._replace_profile(body["metadata"]["name"], body)
        else:
            self._create_profile(body)

    def _create_profile(self, body: Mapping[str, Any]) -> None:
        self._maybe_fail("create", "nodepowerprofiles")
        name = body["metadata"]["name"]
        if ("nodepowerprofiles", name) in self.objects:
            raise errors.KubeConflict(f"{name} exists", status=409)
        self.writes.append(("create", "nodepowerprofiles", name))
        self.objects[("nodepowerprofiles", name)] = {
            **body,
            "metadata": {**body["metadata"], "resourceVersion": "1"},
        }

    def _replace_profile(self, name: str, body: Mapping[str, Any]) -> None:
        self._maybe_fail("update", "nodepowerprofiles")
        current = self.objects.get(("nodepowerprofiles", name))
        if current is None:
            raise errors.KubeFatal(f"{name} not found", status=404)
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise errors.KubeConflict(f"{name} changed", status=409)
        self.writes.append(("update", "nodepowerprofiles", name))
        version = str(int(current["metadata"]["resourceVersion"]) + 1)
        self.objects[("nodepowerprofiles", name)] = {
            **body,
            "metadata": {**body["metadata"], "resourceVersion": version},
        }

    def delete_profile(self, name: str) -> None:
        self._maybe_fail("delete", "nodepowerprofiles")
        if self.objects.pop(("nodepowerprofiles", name), None) is None:
            raise errors.KubeFatal(f"{name} not found", status=404)
        self.writes.append(("delete", "nodepowerprofiles", name))

    def upsert_twin(self, body: Mapping[str, Any], *, exists: bool, dry_run: bool = False) -> None:
        name = body["metadata"]["name"]
        current = self.objects.get(("nodetwins", name))
        if not exists:
            self._maybe_fail("create", "nodetwins")
            if current is not None:
                raise errors.KubeConflict(f"{name} exists", status=409)
            self.writes.append(("create", "nodetwins", name))
            self.objects[("nodetwins", name)] = {
                **body,
                "metadata": {**body["metadata"], "resourceVersion": "1"},
            }
            return
        self._maybe_fail("update", "nodetwins")
        if current is None:
            raise errors.KubeFatal(f"{name} not found", status=404)
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise errors.KubeConflict(f"{name} changed", status=409)
        self.writes.append(("update", "nodetwins", name))
        version = str(int(current["metadata"]["resourceVersion"]) + 1)
        self.objects[("nodetwins", name)] = {
            **body,
            "metadata": {**body["metadata"], "resourceVersion": version},
            **({"status": current["status"]} if "status" in current else {}),
        }

    def patch_twin_status(
        self, name: str, status: Mapping[str, Any], *, dry_run: bool = False
    ) -> None:
        self._maybe_fail("patch", "nodetwins/status")
        current = self.objects.get(("nodetwins", name))
        if current is None:
            raise errors.KubeFatal(f"{name} not found", status=404)
        self.writes.append(("patch", "nodetwins/status", name))
        current["status"] = {**current.get("status", {}), **status}

    def delete_twin(self, name: str) -> None:
        self._maybe_fail("delete", "nodetwins")
        if self.objects.pop(("nodetwins", name), None) is None:
            raise errors.KubeFatal(f"{name} not found", status=404)
        self.writes.append(("delete", "nodetwins", name))

    def create_event(self, namespace: str, body: Mapping[str, Any]) -> None:
        self._maybe_fail("create", "events")
        self.writes.append(("create", "events", str(body.get("metadata", {}).get("name"))))


ModelT = TypeVar("ModelT", bound=BaseModel)
RECENT_TICKS_KEPT = 200


class MemoryStateStore(ports.state.TickParts):
    """The StateStore port in memory (see the module docstring for its limits)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._expiring: dict[str, tuple[str, float]] = {}  # key -> (value, deadline)
        self.fence = 0
        self._converged: models.Converged | None = None
        self.latest: str | None = None
        self.leader: str | None = None
        self.parts: dict[tuple[str, str], str] = {}
        self.pending: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self.done: dict[str, set[int]] = collections.defaultdict(set)
        self.failures: dict[str, dict[str, str]] = collections.defaultdict(dict)
        self.written: dict[str, int] = collections.defaultdict(int)
        self.retries: dict[str, int] = collections.defaultdict(int)
        self.skipped: dict[str, dict[str, str]] = collections.defaultdict(dict)
        self.flags: set[tuple[str, str]] = set()
        self._fsm: dict[str, str] = {}
        self._downgrades: dict[str, float] = {}
        self._transitions: list[dict[str, str]] = []
        self._ids = itertools.count(1)
        self.counters: dict[str, float] = {}
        self.gauges: dict[str, float] = {}
        self._unsent: dict[str, float] = {}
        self.ticks: list[str] = []
        self._last: str | None = None
        self.paused = False

    # --- expiring keys ---------------------------------------------------------------------

    def _get(self, key: str) -> str | None:
        entry = self._expiring.get(key)
        if entry is None or entry[1] <= self.clock():
            self._expiring.pop(key, None)
            return None
        return entry[0]

    def _set_nx(self, key: str, value: str, ttl_s: float) -> bool:
        if self._get(key) is not None:
            return False
        self._expiring[key] = (value, self.clock() + ttl_s)
        return True

    # --- the port --------------------------------------------------------------------------

    def close(self) -> None:
        pass

    def ping(self) -> None:
        pass

    def claim_interval(self, interval_number: int, *, ttl_s: float) -> bool:
        return self._set_nx(f"dedup:{interval_number}", "1", ttl_s)

    def acquire_lock(self, tick_id: str, *, ttl_s: float) -> int | None:
        if not self._set_nx("lock", tick_id, ttl_s):
            return None
        self.fence += 1
        self.latest = tick_id
        return self.fence

    def swap_leader(self, identity: str) -> bool:
        previous, self.leader = self.leader, identity
        return previous is not None and previous != identity

    def lock_holder(self) -> str | None:
        return self._get("lock")

    def renew_lock(self, tick_id: str, *, ttl_s: float) -> bool:
        if self._get("lock") != tick_id:
            return False
        self._expiring["lock"] = (tick_id, self.clock() + ttl_s)
        return True

    def release_lock(self, tick_id: str) -> bool:
        if self._get("lock") != tick_id:
            return False
        del self._expiring["lock"]
        return True

    def holds_fence(self, tick_id: str, token: int, *, ttl_s: float) -> bool:
        if self._get("lock") != tick_id or self.fence != token:
            return False
        return self.renew_lock(tick_id, ttl_s=ttl_s)

    def latest_tick(self) -> str | None:
        return self.latest

    def _save_part(self, tick_id: str, part: str, model: BaseModel) -> None:
        self.parts[(tick_id, part)] = model.model_dump_json()

    def _load_part(self, tick_id: str, part: str, model_type: type[ModelT]) -> ModelT:
        blob = self.parts.get((tick_id, part))
        if blob is None:
            raise errors.StateStoreError(f"tick {tick_id}: {part} is missing (expired?)")
        return model_type.model_validate_json(blob)

    def start_batches(self, tick_id: str, count: int) -> None:
        self.pending.setdefault(tick_id, count)
        self.started.setdefault(tick_id, time.time())

    def writes_started(self, tick_id: str) -> float | None:
        return self.started.get(tick_id)

    def finish_batch(self, tick_id: str, index: int, done: ports.state.BatchDone) -> int | None:
        if index in self.done[tick_id]:
            return None
        self.done[tick_id].add(index)
        self.failures[tick_id].update(done.failures)
        self.written[tick_id] += done.written
        self.retries[tick_id] += done.retries
        for field, amount in done.counters.items():
            self.counters[field] = self.counters.get(field, 0.0) + amount
        self.pending[tick_id] = self.pending.get(tick_id, 0) - 1
        return self.pending[tick_id]

    def add_skipped(self, tick_id: str, skipped: Mapping[str, str]) -> None:
        self.skipped[tick_id].update(skipped)

    def skipped_nodes(self, tick_id: str) -> set[str]:
        return set(self.skipped.get(tick_id, {}))

    def batch_results(self, tick_id: str) -> tuple[dict[str, str], int, int]:
        return (
            dict(self.failures.get(tick_id, {})),
            self.written.get(tick_id, 0),
            self.retries.get(tick_id, 0),
        )

    def mark(self, tick_id: str, flag: str) -> bool:
        if (tick_id, flag) in self.flags:
            return False
        self.flags.add((tick_id, flag))
        return True

    def _fsm_records(self) -> dict[str, dict[str, Any]]:
        return {node: json.loads(raw) for node, raw in self._fsm.items()}

    def update_fsm(
        self,
        token: int,
        records: Mapping[str, Mapping[str, Any]],
        *,
        spend: ports.state.Spend | None = None,
        converged: models.Converged | None = None,
        forget: Sequence[str] = (),
    ) -> int:
        if self.fence > token:
            return 0  # overtaken: writes nothing (as the store's script)
        self._converged = converged
        written = 0
        landed = set()
        for node, record in records.items():
            old = self._fsm.get(node)
            previous = json.loads(old).get("token") if old is not None else None
            if previous is not None and int(previous) > token:
                continue  # a newer tick wrote this node
            self._fsm[node] = json.dumps(dict(record))
            written += 1
            landed.add(node)
        if spend is not None and spend.nodes:
            for node in spend.nodes:
                if node in landed:
                    self._downgrades[f"{spend.tick_id}/{node}"] = spend.time
            self._downgrades = {k: t for k, t in self._downgrades.items() if t >= spend.keep_after}
        for node in forget:
            old = self._fsm.get(node)
            previous = json.loads(old).get("token") if old is not None else None
            if previous is None or int(previous) <= token:
                self._fsm.pop(node, None)
        return written

    def converged(self) -> models.Converged | None:
        return self._converged

    def downgrades_since(self, since: float) -> int:
        return sum(1 for t in self._downgrades.values() if t > since)

    def append_transitions(self, entries: Sequence[Mapping[str, str]], *, maxlen: int) -> None:
        for entry in entries:
            ms = int(time.time() * 1000)
            self._transitions.append({"id": f"{ms}-{next(self._ids)}", **entry})
        del self._transitions[: max(0, len(self._transitions) - maxlen)]

    def _read_transitions(self, *, since_ms: int = 0, count: int = 10_000) -> list[dict[str, str]]:
        rows = [t for t in self._transitions if int(t["id"].split("-")[0]) >= since_ms]
        return copy.deepcopy(rows[:count])

    def add_counters(self, increments: Mapping[str, float]) -> None:
        pending = dict(self._unsent)
        for field, amount in increments.items():
            pending[field] = pending.get(field, 0.0) + amount
        for field, amount in pending.items():
            self.counters[field] = self.counters.get(field, 0.0) + amount
        self._unsent = {}

    def count_later(self, increments: Mapping[str, float]) -> None:
        for field, amount in increments.items():
            self._unsent[field] = self._unsent.get(field, 0.0) + amount

    def set_gauges(self, values: Mapping[str, float]) -> None:
        self.gauges.update(values)

    def metric_values(self) -> ports.state.MetricReadings:
        return ports.state.MetricReadings(dict(self.counters), dict(self.gauges))

    def set_last_tick(self, summary: Mapping[str, Any]) -> None:
        self.ticks.insert(0, json.dumps(summary))
        del self.ticks[RECENT_TICKS_KEPT:]
        self._last = self.ticks[0]

    def _recent_ticks(self) -> list[dict[str, Any]]:
        return [json.loads(t) for t in self.ticks]

    def _last_tick(self) -> dict[str, Any] | None:
        return json.loads(self._last) if self._last is not None else None

    def set_paused(self, paused: bool) -> None:
        self.paused = paused

    def is_paused(self) -> bool:
        return self.paused
