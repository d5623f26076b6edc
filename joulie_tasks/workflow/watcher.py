"""``joulie-tasks watch``: list-then-watch nodes, pods and NodePowerProfiles into the cache
(and NodeTwins, when OUTPUT_API writes them: a converged tick then reads nothing; and
NodeHardwares, when they are read: OUTPUT_API writes NodeTwins or NODE_ORDER=density).

One watcher is active at a time: it holds a Redis lease (``holder#token``, renewed
every third of WATCH_LEASE_TTL) and every cache write checks it (cache_store.py).
Others wait as hot standbys and take over within one TTL of the active one dying;
a new holder relists everything before the cache counts as synced again.

Per resource, one thread: list (paged) → replace the cache's copy atomically →
watch from the list's resourceVersion with bookmarks → apply each event (one Lua
call) → on the server closing the stream, resume from the last resourceVersion
seen; on ``410 Gone`` relist; every WATCH_RELIST_INTERVAL relist anyway. A
heartbeat thread stamps the cache fresh only while all its streams are healthy
(connected and synced), so a watcher cut from the API or stopped lets the cache
go stale and ticks fall back to lists.

Kicks: an event that can change the plan (a performance-only pod appearing,
bound, finishing or going; a node added, removed or changed in a label of
interest or its schedulability) marks the cache changed. The kicker sends one
tick through the normal tick task (same lock, same fence) once the change has
been quiet for KICK_WINDOW or a window has passed since the first change, at
most one per window; changes arriving while a kick waits are coalesced (counted
as dropped kicks). If no tick served the change (the lock was busy), it kicks again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import Any

from joulie_tasks import config, errors, ports
from joulie_tasks.core import cache, hardware
from joulie_tasks.ports import cluster, metrics

logger = logging.getLogger(__name__)

HEARTBEAT_S = 1.0
#: The resources a watcher may watch (the ``resource`` label of the watch families).
RESOURCES = ports.cache.ALL_RESOURCES
#: The event types of a Kubernetes watch stream (the ``type`` label of metrics.WATCH_EVENTS).
EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR")


class KickResult(StrEnum):
    """What became of a kick (the ``result`` label of joulie_kicks_total)."""

    SENT = "sent"
    FAILED = "failed"  # the tick message could not be sent
    COALESCED = "coalesced"  # a change arrived while a kick was waiting
    REPEATED = "repeated"  # no tick served the change: kicked again


class RelistReason(StrEnum):
    """Why a resource was listed again (the ``reason`` label of metrics.WATCH_RELISTS); a watch
    ``ERROR`` event other than 410 relists with the open-ended reason ``error_<code>``."""

    START = "start"
    PERIODIC = "periodic"  # WATCH_RELIST_INTERVAL passed
    EXPIRED = "expired"  # 410 Gone: the resourceVersion is too old
    REQUESTED = "requested"  # a tick asked for it (a downgrade not confirmed)


def holder_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Counts:
    """Metric increments gathered in memory, flushed to Redis by the heartbeat."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: defaultdict[str, float] = defaultdict(float)

    def add(self, name: str, n: float = 1.0, **labels: str) -> None:
        with self._lock:
            self._counts[metrics.field(name, **labels)] += n

    def take(self) -> dict[str, float]:
        with self._lock:
            taken, self._counts = dict(self._counts), defaultdict(float)
        return taken

    def put_back(self, taken: dict[str, float]) -> None:
        with self._lock:
            for key, n in taken.items():
                self._counts[key] += n


def watched(settings: config.Settings) -> tuple[str, ...]:
    """The resources this configuration watches: NodeTwins only when OUTPUT_API writes
    them (the twin writer diffs against them every tick)."""
    twins = (ports.cache.TWIN_RESOURCE,) if settings.output_api.writes_twins else ()
    hardware = (ports.cache.HARDWARE_RESOURCE,) if settings.reads_hardware else ()
    return (*ports.cache.RESOURCES, *twins, *hardware)


def _list_named(
    gateway: cluster.WatchGateway, name: str, *, page_size: int
) -> Iterator[tuple[list[dict[str, Any]], str]]:
    # One call per constant: the RBAC scan (tests/deploy/rbac_scan.py) reads them.
    if name == "nodes":
        return gateway.list_pages(cluster.NODES, page_size=page_size)
    if name == "pods":
        return gateway.list_pages(cluster.PODS, page_size=page_size)
    if name == ports.cache.TWIN_RESOURCE:
        return gateway.list_pages(cluster.TWINS, page_size=page_size)
    if name == ports.cache.HARDWARE_RESOURCE:
        return gateway.list_pages(cluster.HARDWARE, page_size=page_size)
    return gateway.list_pages(cluster.PROFILES, page_size=page_size)


def _watch_named(
    gateway: cluster.WatchGateway, name: str, *, resource_version: str, timeout_s: int
) -> Iterator[dict[str, Any]]:
    if name == "nodes":
        return gateway.watch_events(
            cluster.NODES, resource_version=resource_version, timeout_s=timeout_s
        )
    if name == "pods":
        return gateway.watch_events(
            cluster.PODS, resource_version=resource_version, timeout_s=timeout_s
        )
    if name == ports.cache.TWIN_RESOURCE:
        return gateway.watch_events(
            cluster.TWINS, resource_version=resource_version, timeout_s=timeout_s
        )
    if name == ports.cache.HARDWARE_RESOURCE:
        return gateway.watch_events(
            cluster.HARDWARE, resource_version=resource_version, timeout_s=timeout_s
        )
    return gateway.watch_events(
        cluster.PROFILES, resource_version=resource_version, timeout_s=timeout_s
    )


class _Stream:
    """One resource's list-then-watch loop inside a session."""

    def __init__(self, session: _Session, resource: str) -> None:
        self.session = session
        self.name = resource
        self.rv = ""
        self.healthy = False
        self.relist_reason: str | None = RelistReason.START
        self.last_relist = 0.0

    def run(self) -> None:
        s = self.session
        backoff = 0.2
        while not s.stopped.is_set():
            try:
                if time.monotonic() - self.last_relist > s.settings.watch_relist_interval:
                    self.relist_reason = self.relist_reason or RelistReason.PERIODIC
                if self.relist_reason is not None:
                    self.relist(self.relist_reason)
                self.watch_once()
                backoff = 0.2
            except (ports.cache.LeaseLost, ports.cache.NotSynced) as e:
                logger.warning("watch %s: %s", self.name, e)
                s.lost(str(e))
                return
            except errors.KubeError as e:
                self.healthy = False
                s.counts.add(metrics.WATCH_ERRORS, resource=self.name)
                logger.warning("watch %s: %s; retrying in %.1fs", self.name, e, backoff)
                if s.stopped.wait(backoff):
                    return
                backoff = min(backoff * 2, 5.0)
            except errors.StateStoreError as e:
                self.healthy = False
                logger.warning("watch %s: Redis: %s", self.name, e)
                if s.stopped.wait(1.0):
                    return

    def relist(self, reason: str) -> None:
        s = self.session
        rv = ""
        count = 0
        codes: dict[str, str] = {}
        records: dict[str, str] = {}
        # Page by page: each page is reduced to records before the next is read, so the
        # watcher never holds the whole collection as JSON objects.
        for page, version in _list_named(s.gateway, self.name, page_size=s.settings.list_page_size):
            rv = rv or version
            count += len(page)
            self._reduce(page, codes, records)
        entries = codes if self.name == "pods" else records
        relist = ports.cache.Relist(resource=self.name, entries=entries)
        s.cache.replace(s.lease, relist, rv=rv, now=time.time(), reason=reason)
        s.counts.add(metrics.WATCH_RELISTS, resource=self.name, reason=reason)
        logger.info("watch %s: relisted %d objects (%s) at rv %s", self.name, count, reason, rv)
        self.rv = rv
        self.relist_reason = None
        self.last_relist = time.monotonic()
        s.changed()  # a relist may change the plan: let the kicker look

    def _reduce(
        self, page: list[dict[str, Any]], codes: dict[str, str], records: dict[str, str]
    ) -> None:
        if self.name == "pods":
            for obj in page:
                code = cache.pod_contribution(obj)
                if code:
                    codes[cache.pod_key(obj)] = code
            return
        for obj in page:
            record = self._record(obj)
            if record is not None:
                records[record[0]] = record[1]

    def _record(self, obj: dict[str, Any]) -> tuple[str, str] | None:
        if self.name == "nodes":
            node = cache.node_record(obj, self.session.keys)
            return None if node is None else (node.name, node.model_dump_json())
        if self.name == ports.cache.TWIN_RESOURCE:
            found = cache.twin_record(obj)
            return None if found is None else (found.name, found.model_dump_json())
        if self.name == ports.cache.HARDWARE_RESOURCE:
            hw = cache.hardware_record(obj)
            return None if hw is None else (hw.name or hw.node_name, hw.model_dump_json())
        npp = cache.npp_record(obj)
        return None if npp is None else (npp.name, npp.model_dump_json())

    def watch_once(self) -> None:
        s = self.session
        deadline = self.last_relist + s.settings.watch_relist_interval
        timeout = max(1, min(int(s.settings.watch_timeout), math.ceil(deadline - time.monotonic())))
        stream = _watch_named(s.gateway, self.name, resource_version=self.rv, timeout_s=timeout)
        self.healthy = True
        try:
            for event in stream:
                if s.stopped.is_set():
                    return
                self.handle(event)
                if self.relist_reason is not None:
                    return
        finally:
            stream.close()  # type: ignore[attr-defined]

    def handle(self, event: dict[str, Any]) -> None:
        s = self.session
        kind = str(event.get("type"))
        obj = event.get("object") or {}
        s.counts.add(metrics.WATCH_EVENTS, resource=self.name, type=kind)
        if kind == "ERROR":
            code = obj.get("code")
            self.healthy = False
            self.relist_reason = RelistReason.EXPIRED if code == 410 else f"error_{code}"
            logger.info("watch %s: %s (%s); relisting", self.name, obj.get("message"), code)
            return
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or self.rv)
        if kind == "BOOKMARK":
            self.rv = rv
            return
        if s.paused_for_test.is_set():
            return
        now = time.time()
        if self.name == "pods":
            code = "" if kind == "DELETED" else cache.pod_contribution(obj)
            relevant = s.cache.apply_pod(s.lease, cache.pod_key(obj), code, rv, now)
        else:
            name = str((obj.get("metadata") or {}).get("name") or "")
            record = None if kind == "DELETED" else self._record(obj)
            text = "" if record is None else record[1]
            relevant = s.cache.apply_record(s.lease, self.name, name, text, rv, now)
        self.rv = rv
        if relevant:
            s.changed()


class _Session:
    """Everything the active watcher runs while it holds one lease."""

    def __init__(
        self,
        *,
        settings: config.Settings,
        cache_: ports.cache.WatchCache,
        state: ports.state.StateStore,
        gateway: cluster.WatchGateway,
        lease: str,
        holder: str,
        server: str,
        kick: Callable[[], None],
        counts: _Counts,
    ) -> None:
        self.settings = settings
        self.cache = cache_
        self.state = state
        self.gateway = gateway
        self.lease = lease
        self.holder = holder
        #: The Redis server the session's cache is on (``WatchCache.server``).
        self.server = server
        self.kick = kick
        self.counts = counts
        self.stopped = threading.Event()
        self.paused_for_test = threading.Event()
        self.lost_reason: str | None = None
        self.keys = cache.interest_keys(
            settings.selector,
            reserved_label_key=settings.reserved_label_key,
            profile_label=settings.power_profile_label,
            draining_label=settings.draining_label,
            extra=hardware.label_keys(settings.product_label_keys)
            if settings.reads_hardware
            else (),
        )
        self.streams = [_Stream(self, name) for name in watched(settings)]
        self._changed = threading.Condition()
        self._dirty_since: float | None = None
        self._last_change = 0.0

    def lost(self, reason: str) -> None:
        self.lost_reason = self.lost_reason or reason
        self.stopped.set()

    def changed(self) -> None:
        with self._changed:
            now = time.monotonic()
            if self._dirty_since is None:
                self._dirty_since = now
            else:
                self.counts.add(metrics.KICKS, result=KickResult.COALESCED)
            self._last_change = now
            self._changed.notify_all()

    def run(self) -> str:
        """Run until the lease is lost or stop is asked; return why it ended."""
        threads = [
            threading.Thread(target=st.run, name=f"watch-{st.name}", daemon=True)
            for st in self.streams
        ]
        threads.append(threading.Thread(target=self._kicker, name="kicker", daemon=True))
        for t in threads:
            t.start()
        try:
            self._beat()
        finally:
            self.stopped.set()
            with self._changed:
                self._changed.notify_all()
        return self.lost_reason or "stopped"

    def _beat(self) -> None:
        ttl = self.settings.watch_lease_ttl
        next_renew = 0.0
        while not self.stopped.wait(min(HEARTBEAT_S, ttl / 3)):
            try:
                if time.monotonic() >= next_renew:
                    if not self.cache.renew_lease(self.lease, ttl_s=ttl):
                        self.lost("the lease expired or was taken")
                        return
                    next_renew = time.monotonic() + ttl / 3
                if self.cache.server() != self.server:
                    # A restart or a failover may have lost cache writes the streams have
                    # moved past: vouch for nothing, relist everything under a new lease.
                    self.cache.release_lease(self.lease)
                    self.lost("Redis is another server now (restarted or failed over)")
                    return
                healthy = all(st.healthy and st.relist_reason is None for st in self.streams)
                fresh = healthy and not self.paused_for_test.is_set()
                if fresh and self.cache.heartbeat(self.lease, self.holder, time.time()):
                    for st in self.streams:
                        st.relist_reason = st.relist_reason or RelistReason.REQUESTED
                    self.close_streams()
                self._flush()
            except ports.cache.LeaseLost as e:
                self.lost(str(e))
                return
            except errors.StateStoreError as e:
                logger.warning("watcher: Redis: %s", e)

    def close_streams(self) -> None:
        """Nothing to do: streams notice relist_reason on their next event or bookmark."""

    def _flush(self) -> None:
        taken = self.counts.take()
        if taken:
            try:
                self.state.add_counters(taken)
            except errors.StateStoreError:
                self.counts.put_back(taken)  # sent with the next flush

    def _kicker(self) -> None:
        """Debounce: fire a quarter window after the last change, or one window after
        the first, whichever is sooner; rate limit: never twice within one window."""
        window = self.settings.kick_window
        last_kick = -math.inf
        while not self.stopped.is_set():
            with self._changed:
                if self._dirty_since is None:
                    self._changed.wait(window)
                    continue
                settle = min(self._last_change + window / 4, self._dirty_since + window)
                fire_at = max(settle, last_kick + window)
                now = time.monotonic()
                if now < fire_at:
                    self._changed.wait(fire_at - now)
                    continue
                self._dirty_since = None
            try:
                self.kick()
                last_kick = time.monotonic()
                self.counts.add(metrics.KICKS, result=KickResult.SENT)
            except Exception as e:
                logger.warning("watcher: kick not sent: %s", e)
                self.counts.add(metrics.KICKS, result=KickResult.FAILED)
            self._rekick_if_unserved(window)

    def _rekick_if_unserved(self, window: float) -> None:
        """A kick that met a busy lock is skipped, and a tick already running may have
        read the cache before the change: until a tick has served the change, kick
        again whenever the lock is free (backing off, so failing ticks are not hammered)."""
        wait = window
        while not self.stopped.wait(wait):
            with self._changed:
                if self._dirty_since is not None:
                    return  # a newer change will kick anyway
            try:
                status = self.cache.status()
                busy = self.state.lock_holder() is not None
            except errors.StateStoreError:
                return
            if status.seq <= status.served:
                return
            if not busy:
                self.counts.add(metrics.KICKS, result=KickResult.REPEATED)
                self.changed()
                return
            wait = min(wait * 2, 30.0)


class Watcher:
    """The lease loop: standby until the lease is free, then a session while it holds."""

    def __init__(
        self,
        settings: config.Settings,
        *,
        state: ports.state.StateStore,
        cache: ports.cache.WatchCache,
        gateway: cluster.WatchGateway,
        kick: Callable[[], None],
        holder: str | None = None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.cache = cache
        self.gateway = gateway
        self.kick = kick
        self.holder = holder or holder_identity()
        self.counts = _Counts()
        self.session: _Session | None = None

    def run(self, stop: threading.Event) -> None:
        ttl = self.settings.watch_lease_ttl
        standby_logged = False
        while not stop.is_set():
            try:
                lease = self.cache.acquire_lease(self.holder, ttl_s=ttl)
            except errors.StateStoreError as e:
                logger.warning("watcher: Redis: %s", e)
                stop.wait(1.0)
                continue
            if lease is None:
                if not standby_logged:
                    logger.info("watcher: standby (active: %s)", self._holder())
                    standby_logged = True
                stop.wait(min(1.0, ttl / 4))
                continue
            standby_logged = False
            logger.info("watcher: active, lease %s", lease)
            try:  # the previous holder's copy is not ours to vouch for: relist first
                server = self.cache.server()
                self.cache.unsync(watched(self.settings))
            except errors.StateStoreError as e:
                logger.warning("watcher: Redis: %s", e)
                with contextlib.suppress(errors.StateStoreError):
                    self.cache.release_lease(lease)  # not vouched for: try again afresh
                stop.wait(1.0)
                continue
            with contextlib.suppress(errors.StateStoreError):
                self.state.add_counters(metrics.Values().add(metrics.LEASE_CHANGES).as_dict())
            session = _Session(
                settings=self.settings,
                cache_=self.cache,
                state=self.state,
                gateway=self.gateway,
                lease=lease,
                holder=self.holder,
                server=server,
                kick=self.kick,
                counts=self.counts,
            )
            self.session = session
            stopper = threading.Thread(
                target=lambda s=session: (stop.wait(), s.stopped.set()), daemon=True
            )
            stopper.start()
            reason = session.run()
            logger.warning("watcher: session ended: %s", reason)
            if stop.is_set():
                with contextlib.suppress(errors.StateStoreError):
                    self.cache.release_lease(lease)

    def _holder(self) -> str | None:
        try:
            return self.cache.lease_holder()
        except errors.StateStoreError:
            return None
