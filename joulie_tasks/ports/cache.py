"""The cache port: the watch-fed cluster cache, as a tick and as the watcher use it.

``TickCache`` is what a tick reads (a consistent view, or why not), serves (the
change sequence it answered) and asks for (a relist); ``WatchCache`` is what the
watcher writes under its lease. ``adapters.cache_store.CacheStore`` implements both
over Redis; how records become keys is its business, never the caller's: the
watcher hands over a :class:`Relist` (name → record), not a key layout. No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from joulie_tasks import errors
from joulie_tasks.core import cache, models

#: The resources every watcher watches (the ``resource`` label of the watch families).
RESOURCES = ("nodes", "pods", "nodepowerprofiles")
#: Watched besides them while OUTPUT_API writes NodeTwins (docs/SPEC.md §13.7).
TWIN_RESOURCE = "nodetwins"
#: Watched besides them while NodeHardware is read (docs/SPEC.md §13.10).
HARDWARE_RESOURCE = "nodehardwares"
ALL_RESOURCES = (*RESOURCES, TWIN_RESOURCE, HARDWARE_RESOURCE)
#: Resources whose change can change the plan (a kick): nodes, and the hardware that
#: orders and caps them. A twin or a profile is not: the next tick puts it right.
PLAN_INPUTS = frozenset({"nodes", HARDWARE_RESOURCE})


class LeaseLost(errors.JoulieError):
    """Raised when a cache write is refused: this watcher no longer holds the lease."""


class NotSynced(errors.JoulieError):
    """Raised when a cache write is refused: the resource is not synced (Redis lost the
    cache)."""


@dataclass(frozen=True)
class CacheView:
    """What a tick reads from the cache, read in one transaction."""

    snapshot: models.Snapshot
    demand: models.Demand
    seq: int
    age_s: float
    #: The content revision: bumped by every cached change and every relist.
    rev: int = 0
    #: The snapshot's NodeTwins came from the cache (asked for, and watched).
    twins_cached: bool = False
    #: The snapshot's NodeHardwares came from the cache (asked for, and watched).
    hardware_cached: bool = False


@dataclass(frozen=True)
class CacheStatus:
    """The cache's bookkeeping: per-resource sync, heartbeat, lease, change sequence."""

    synced: dict[str, bool]
    heartbeat: float | None
    holder: str | None
    last_relist: float | None
    last_relist_reason: str | None
    seq: int
    served: int
    lease: str | None
    #: The content revision (see CacheView.rev).
    rev: int = 0

    def age(self, now: float) -> float | None:
        return None if self.heartbeat is None else max(0.0, now - self.heartbeat)


@dataclass(frozen=True)
class Relist:
    """One resource freshly listed: ``entries`` maps a node, profile or twin name to
    its record (JSON), or a pod's ``namespace/name`` to its contribution code (only the
    pods that count; the cache derives the demand counts from them)."""

    resource: str
    entries: Mapping[str, str] = field(default_factory=dict)


class TickCache(Protocol):
    """The cache as a tick uses it (workflow/cache_tick.py)."""

    def read(
        self,
        *,
        tick_time: float,
        now: float,
        max_age: float,
        twins: bool = False,
        hardware: bool = False,
    ) -> CacheView | cache.Unusable:
        """The cache as one consistent view, or why it cannot be used; with ``twins``
        (``hardware``) the snapshot carries the cached NodeTwins (NodeHardwares) when
        the watcher watches them."""
        ...

    def status(self) -> CacheStatus: ...

    def serve(self, seq: int, now: float) -> float | None:
        """A tick that read change ``seq`` finished: the reaction latency of the oldest
        change it answered (seconds), or None when no change was waiting."""
        ...

    def request_relist(self) -> None: ...


class WatchCache(Protocol):
    """The cache as the watcher writes it: every write checks the watcher lease."""

    def acquire_lease(self, holder: str, *, ttl_s: float) -> str | None: ...
    def renew_lease(self, value: str, *, ttl_s: float) -> bool: ...
    def release_lease(self, value: str) -> None: ...
    def lease_holder(self) -> str | None: ...
    def server(self) -> str:
        """Which Redis server process holds the cache: another one means a restart or a
        failover, which may have lost the last cache writes."""
        ...

    def apply_pod(self, lease: str, key: str, code: str, rv: str, now: float) -> bool: ...
    def apply_record(
        self, lease: str, resource: str, name: str, record: str, rv: str, now: float
    ) -> bool: ...
    def replace(self, lease: str, relist: Relist, *, rv: str, now: float, reason: str) -> bool:
        """Replace a resource's cached contents with ``relist``, atomically; True when
        they differ from what was cached."""
        ...

    def heartbeat(self, lease: str, holder: str, now: float) -> bool: ...
    def unsync(self, watched: tuple[str, ...] = ...) -> None:
        """Mark every resource unsynced and record the ones this watcher watches."""
        ...

    def status(self) -> CacheStatus: ...
