"""The watch-fed cluster cache and the watcher lease in Redis (keys built here only).

Layout (all under ``joulie:cache:``): ``nodes`` (name → NodeInfo JSON, labels of
interest only), ``npps`` (name → NppInfo JSON), ``twins`` (name → TwinInfo JSON,
only while OUTPUT_API writes NodeTwins), ``hardware`` (name → HardwareInfo JSON, only
while NodeHardware is read: OUTPUT_API writes NodeTwins or NODE_ORDER is density),
``pods`` (namespace/name → the pod's
contribution code, only for pods that count), ``demand`` (cluster-wide counts),
``perf`` (node → active performance-only pods) and ``meta`` (per resource: synced
flag and resourceVersion; the resources the watcher watches; heartbeat, holder, last
relist and its reason; the change sequence the kicks and the reaction latency use).

Every write is a Lua script that first checks the watcher lease (``joulie:watch:
lease`` must still hold this watcher's ``holder#token``), so a watcher that lost the
lease — paused, partitioned, or Redis flushed under it — cannot write. A pod event
is one script call: it swaps the pod's old contribution for the new one and adjusts
exactly the counts they name (O(1)). A relist builds fresh keys aside and renames
them over the live ones in one script, so a reader never sees half a relist.
"""

from __future__ import annotations

import functools
import json
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

import redis
from pydantic import BaseModel, TypeAdapter

from joulie_tasks.adapters import redis_errors, store
from joulie_tasks.core import cache, models
from joulie_tasks.ports import cache as cache_port

logger = logging.getLogger(__name__)

RecordT = TypeVar("RecordT", bound=BaseModel)

PREFIX = f"{store.PREFIX}:cache"
META = f"{PREFIX}:meta"
NODES = f"{PREFIX}:nodes"
NPPS = f"{PREFIX}:npps"
PODS = f"{PREFIX}:pods"
DEMAND = f"{PREFIX}:demand"
PERF = f"{PREFIX}:perf"
TWINS = f"{PREFIX}:twins"
HARDWARE = f"{PREFIX}:hardware"
LEASE = f"{store.PREFIX}:watch:lease"
LEASE_FENCE = f"{store.PREFIX}:watch:fence"
#: The hash of each resource kept as one record per object.
RECORDS = {
    "nodes": NODES,
    "nodepowerprofiles": NPPS,
    cache_port.TWIN_RESOURCE: TWINS,
    cache_port.HARDWARE_RESOURCE: HARDWARE,
}
#: The keys each resource's relist replaces.
_RELIST_KEYS = {
    "nodes": (NODES,),
    "nodepowerprofiles": (NPPS,),
    "pods": (PODS, DEMAND, PERF),
    cache_port.TWIN_RESOURCE: (TWINS,),
    cache_port.HARDWARE_RESOURCE: (HARDWARE,),
}

_CHECK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
"""
_MARK_CHANGE = """
local function mark_change(meta, now)
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  if redis.call('HEXISTS', meta, 'pending_since') == 0 then
    redis.call('HSET', meta, 'pending_since', now, 'pending_seq', seq)
  end
end
"""
# KEYS: lease, meta, pods, demand, perf; ARGV: lease value, pod key, new code, rv, now
_APPLY_POD = (
    _MARK_CHANGE
    + """
local function adjust(code, d)
  if code == '' then return end
  local c = string.sub(code, 1, 1)
  if c == 'P' then
    redis.call('HINCRBY', KEYS[4], 'performance', d)
    local node = string.sub(code, 3)
    if node == '' then
      redis.call('HINCRBY', KEYS[4], 'pending_performance', d)
    elseif redis.call('HINCRBY', KEYS[5], node, d) <= 0 then
      redis.call('HDEL', KEYS[5], node)
    end
  elseif c == 'E' then
    redis.call('HINCRBY', KEYS[4], 'eco', d)
  else
    redis.call('HINCRBY', KEYS[4], 'general', d)
  end
end
"""
    + _CHECK
    + """
if redis.call('HGET', KEYS[2], 'synced:pods') ~= '1' then return -2 end
local old = redis.call('HGET', KEYS[3], ARGV[2]) or ''
local new = ARGV[3]
redis.call('HSET', KEYS[2], 'rv:pods', ARGV[4])
if old == new then return 0 end
redis.call('HINCRBY', KEYS[2], 'rev', 1)
adjust(old, -1)
adjust(new, 1)
if new == '' then
  redis.call('HDEL', KEYS[3], ARGV[2])
else
  redis.call('HSET', KEYS[3], ARGV[2], new)
end
if string.sub(old, 1, 1) == 'P' or string.sub(new, 1, 1) == 'P' then
  mark_change(KEYS[2], ARGV[5])
  return 2
end
return 1
"""
)
# KEYS: lease, meta, hash; ARGV: lease value, resource, name, record ('' deletes), rv,
# now, 1 when a change of this resource can change the plan
_APPLY_RECORD = (
    _MARK_CHANGE
    + _CHECK
    + """
if redis.call('HGET', KEYS[2], 'synced:' .. ARGV[2]) ~= '1' then return -2 end
redis.call('HSET', KEYS[2], 'rv:' .. ARGV[2], ARGV[5])
local old = redis.call('HGET', KEYS[3], ARGV[3]) or ''
if old == ARGV[4] then return 0 end
redis.call('HINCRBY', KEYS[2], 'rev', 1)
if ARGV[4] == '' then
  redis.call('HDEL', KEYS[3], ARGV[3])
else
  redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
end
if ARGV[7] == '1' then
  mark_change(KEYS[2], ARGV[6])
  return 2
end
return 1
"""
)
# KEYS: lease, meta, then pairs (staged, live); ARGV: lease value, resource, rv, now,
# reason, changed (1: the plan may differ: bump the change sequence)
_SWAP = (
    _MARK_CHANGE
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  for i = 3, #KEYS, 2 do redis.call('DEL', KEYS[i]) end
  return -1
end
for i = 3, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('RENAME', KEYS[i], KEYS[i + 1])
  else
    redis.call('DEL', KEYS[i + 1])
  end
end
redis.call('HSET', KEYS[2], 'synced:' .. ARGV[2], '1', 'rv:' .. ARGV[2], ARGV[3],
  'last_relist', ARGV[4], 'last_relist_reason', ARGV[2] .. ': ' .. ARGV[5])
if ARGV[6] == '1' then mark_change(KEYS[2], ARGV[4]) end
-- Every relist is a new revision (the next tick is a full one). A cache built afresh
-- starts its revisions at the time in microseconds, above any revision it had before.
if redis.call('HEXISTS', KEYS[2], 'rev') == 0 then
  redis.call('HSET', KEYS[2], 'rev', string.format('%d', math.floor(tonumber(ARGV[4]) * 1000000)))
end
redis.call('HINCRBY', KEYS[2], 'rev', 1)
return 1
"""
)
# KEYS: lease, meta; ARGV: lease value, now, holder
_HEARTBEAT = (
    _CHECK
    + """
redis.call('HSET', KEYS[2], 'heartbeat', ARGV[2], 'holder', ARGV[3])
local wanted = redis.call('HGET', KEYS[2], 'relist_requested')
if wanted then redis.call('HDEL', KEYS[2], 'relist_requested') return 2 end
return 1
"""
)
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS: meta; ARGV: served seq, now → latency in seconds ('' when none pending)
_SERVE = """
local served = tonumber(redis.call('HGET', KEYS[1], 'served') or '0')
local seq = tonumber(ARGV[1])
if seq > served then redis.call('HSET', KEYS[1], 'served', seq) end
local first = tonumber(redis.call('HGET', KEYS[1], 'pending_seq') or '-1')
if first >= 0 and first <= seq then
  local since = redis.call('HGET', KEYS[1], 'pending_since')
  redis.call('HDEL', KEYS[1], 'pending_since', 'pending_seq')
  local now_seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
  if now_seq > seq then
    redis.call('HSET', KEYS[1], 'pending_since', ARGV[2], 'pending_seq', seq + 1)
  end
  return since
end
return ''
"""


class CacheStore:
    """The cache and the lease (ports/cache.py: TickCache, WatchCache), on the Redis
    connection of the state store (adapters/clients.py wires them together)."""

    def __init__(self, client: redis.Redis, *, url: str, failover: bool) -> None:
        r = client
        self._r = r
        self._translated = functools.partial(
            redis_errors.translated, client, url=url, failover=failover
        )
        self._apply_pod = r.register_script(_APPLY_POD)
        self._apply_record = r.register_script(_APPLY_RECORD)
        self._swap = r.register_script(_SWAP)
        self._heartbeat = r.register_script(_HEARTBEAT)
        self._renew = r.register_script(_RENEW)
        self._serve = r.register_script(_SERVE)
        self._server_unknown_logged = False

    # --- lease ---------------------------------------------------------------------------

    def acquire_lease(self, holder: str, *, ttl_s: float) -> str | None:
        """Take the watcher lease; its value ``holder#token.nonce`` fences every cache
        write. The random nonce keeps the value unique even when a FLUSHALL has reset the
        token counter, so a write from the session before the flush cannot pass."""
        with self._translated():
            token = int(self._r.incr(LEASE_FENCE))
            value = f"{holder}#{token}.{uuid.uuid4().hex[:8]}"
            if self._r.set(LEASE, value.encode(), nx=True, px=max(1, int(ttl_s * 1000))):
                return value
        return None

    def renew_lease(self, value: str, *, ttl_s: float) -> bool:
        with self._translated():
            return bool(self._renew(keys=[LEASE], args=[value, max(1, int(ttl_s * 1000))]))

    def release_lease(self, value: str) -> None:
        with self._translated():
            self._r.eval(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end",
                1,
                LEASE,
                value,
            )

    def lease_holder(self) -> str | None:
        with self._translated():
            v = self._r.get(LEASE)
        return _s(v) if v else None

    def server(self) -> str:
        """The run id of the Redis server the cache is on (the master, with Sentinel);
        '' when the server does not say (an ACL refusing INFO, a server without run ids):
        then no change of server can be seen, as before D70, and that is logged once."""
        with self._translated():
            try:
                run_id = str(self._r.info("server").get("run_id") or "")
            except redis.ResponseError as e:  # NOPERM, an unknown command
                run_id, why = "", f"{type(e).__name__}: {e}"
            else:
                why = "INFO server has no run_id"
        if not run_id and not self._server_unknown_logged:
            self._server_unknown_logged = True
            logger.warning(
                "watcher: cannot tell which Redis server holds the cache (%s): a restart "
                "or failover that keeps the lease is healed by the next relist only",
                why,
            )
        return run_id

    # --- watcher writes ------------------------------------------------------------------

    def apply_pod(self, lease: str, key: str, code: str, rv: str, now: float) -> bool:
        """Swap one pod's contribution; True when the change can change the plan."""
        with self._translated():
            result = int(
                self._apply_pod(
                    keys=[LEASE, META, PODS, DEMAND, PERF], args=[lease, key, code, rv, repr(now)]
                )
            )
        return _checked(result, "pods")

    def apply_record(
        self, lease: str, resource: str, name: str, record: str, rv: str, now: float
    ) -> bool:
        """Store (or delete, ``record=""``) one node, profile, twin or hardware record
        (a NodeHardware counts like a node: it orders and caps the plan); True when
        it can change the plan (a node added, removed or changed). A twin is not: the
        next tick puts a changed or deleted twin right, as it does a profile."""
        hash_key = RECORDS[resource]
        relevant = "1" if resource in cache_port.PLAN_INPUTS else "0"
        with self._translated():
            result = int(
                self._apply_record(
                    keys=[LEASE, META, hash_key],
                    args=[lease, resource, name, record, rv, repr(now), relevant],
                )
            )
        return _checked(result, resource)

    def replace(
        self, lease: str, relist: cache_port.Relist, *, rv: str, now: float, reason: str
    ) -> bool:
        """Replace a resource's keys with freshly listed contents, atomically; True when
        the contents differ from what was cached."""
        resource = relist.resource
        hashes = _hashes(relist)
        stage = f"{PREFIX}:staging:{uuid.uuid4().hex}"
        pairs: list[str] = []
        with self._translated():
            before = {key: self._r.hgetall(key) for key in _RELIST_KEYS[resource]}
            changed = any(
                {_s(k): _s(v) for k, v in before[key].items()} != dict(hashes.get(key, {}))
                for key in _RELIST_KEYS[resource]
            )
            pipe = self._r.pipeline(transaction=False)
            for live in _RELIST_KEYS[resource]:
                staged = f"{stage}:{live.rsplit(':', 1)[-1]}"
                pairs += [staged, live]
                items = list(hashes.get(live, {}).items())
                for start in range(0, len(items), 5000):
                    pipe.hset(staged, mapping=dict(items[start : start + 5000]))
                pipe.expire(staged, 600)
            pipe.execute()
            result = int(
                self._swap(
                    keys=[LEASE, META, *pairs],
                    args=[lease, resource, rv, repr(now), reason, "1" if changed else "0"],
                )
            )
        if result == -1:
            raise cache_port.LeaseLost("the watcher lease was lost")
        return changed

    def heartbeat(self, lease: str, holder: str, now: float) -> bool:
        """Stamp the cache fresh; True when a tick asked for a relist meanwhile."""
        with self._translated():
            result = int(self._heartbeat(keys=[LEASE, META], args=[lease, repr(now), holder]))
        if result == -1:
            raise cache_port.LeaseLost("the watcher lease was lost")
        return result == 2

    def unsync(self, watched: tuple[str, ...] = cache_port.RESOURCES) -> None:
        """Mark every resource unsynced (a new watcher takes over: ticks use lists) and
        record which ones it watches: each must be synced before the cache is used."""
        with self._translated():
            pipe = self._r.pipeline(transaction=True)
            pipe.hdel(META, *[f"synced:{r}" for r in cache_port.ALL_RESOURCES], "heartbeat")
            pipe.hset(META, "watched", ",".join(watched))
            pipe.execute()

    # --- reads ---------------------------------------------------------------------------

    def read(
        self,
        *,
        tick_time: float,
        now: float,
        max_age: float,
        twins: bool = False,
        hardware: bool = False,
    ) -> cache_port.CacheView | cache.Unusable:
        """The cache as one consistent view, or why it cannot be used. With ``twins``
        (``hardware``) the snapshot carries the cached NodeTwins (NodeHardwares) when the
        watcher watches them (``twins_cached``, ``hardware_cached``); otherwise the
        caller lists them."""
        optional = ((TWINS,) if twins else ()) + ((HARDWARE,) if hardware else ())
        with self._translated():
            pipe = self._r.pipeline(transaction=True)
            for key in (META, NODES, NPPS, DEMAND, PERF, *optional):
                pipe.hgetall(key)
            meta_raw, nodes_raw, npps_raw, demand_raw, perf_raw, *rest = pipe.execute()
        extra = dict(zip(optional, rest, strict=True))
        twins_raw, hw_raw = extra.get(TWINS, {}), extra.get(HARDWARE, {})
        meta = {_s(k): _s(v) for k, v in meta_raw.items()}
        if not meta:
            return cache.Unusable.ABSENT
        watched = _watched(meta)
        if any(meta.get(f"synced:{r}") != "1" for r in watched):
            return cache.Unusable.NOT_SYNCED
        age = now - float(meta.get("heartbeat") or 0)
        if age > max_age:
            return cache.Unusable.STALE
        nodes = _records(models.NodeInfo, nodes_raw)
        npps = _records(models.NppInfo, npps_raw)
        demand = cache.demand_from_counts(
            {_s(k): int(v) for k, v in demand_raw.items()},
            {_s(k): int(v) for k, v in perf_raw.items()},
        )
        cached = twins and cache_port.TWIN_RESOURCE in watched
        twin_records = _records(models.TwinInfo, twins_raw) if cached else []
        hw_cached = hardware and cache_port.HARDWARE_RESOURCE in watched
        hw_records = _records(models.HardwareInfo, hw_raw) if hw_cached else []
        snap = cache.snapshot_from_records(
            tick_time=tick_time, nodes=nodes, profiles=npps, twins=twin_records, hardware=hw_records
        )
        return cache_port.CacheView(
            snapshot=snap,
            demand=demand,
            seq=int(meta.get("seq") or 0),
            rev=int(meta.get("rev") or 0),
            age_s=age,
            twins_cached=cached,
            hardware_cached=hw_cached,
        )

    def serve(self, seq: int, now: float) -> float | None:
        """A tick that read change ``seq`` finished: the reaction latency of the oldest
        change it answered (seconds), or None when no change was waiting."""
        with self._translated():
            since = self._serve(keys=[META], args=[seq, repr(now)])
        text = since.decode() if isinstance(since, bytes) else str(since or "")
        return max(0.0, now - float(text)) if text else None

    def request_relist(self) -> None:
        with self._translated():
            self._r.hset(META, "relist_requested", repr(time.time()))

    def status(self) -> cache_port.CacheStatus:
        with self._translated():
            meta_raw = self._r.hgetall(META)
            lease = self._r.get(LEASE)
        meta = {_s(k): _s(v) for k, v in meta_raw.items()}

        def number(key: str) -> float | None:
            return float(meta[key]) if key in meta else None

        return cache_port.CacheStatus(
            synced={r: meta.get(f"synced:{r}") == "1" for r in _watched(meta)},
            heartbeat=number("heartbeat"),
            holder=meta.get("holder"),
            last_relist=number("last_relist"),
            last_relist_reason=meta.get("last_relist_reason"),
            seq=int(meta.get("seq") or 0),
            rev=int(meta.get("rev") or 0),
            served=int(meta.get("served") or 0),
            lease=_s(lease) if lease else None,
        )


@functools.cache
def _list_of(model: type[RecordT]) -> TypeAdapter[list[RecordT]]:
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def _records(model: type[RecordT], raw: Mapping[bytes, bytes]) -> list[RecordT]:
    """A hash of JSON records as models, decoded and validated in one pass (pydantic's
    JSON parser over the joined records: about three times faster than json.loads and
    an unvalidated construct per record). A record that does not parse raises
    ValueError: the tick lists instead (cache_tick.read)."""
    return _list_of(model).validate_json(b"[" + b",".join(raw.values()) + b"]")


def _watched(meta: Mapping[str, str]) -> tuple[str, ...]:
    """The resources the holder watches (the three when a watcher never said)."""
    listed = tuple(
        r for r in (meta.get("watched") or "").split(",") if r in cache_port.ALL_RESOURCES
    )
    return listed or cache_port.RESOURCES


def _hashes(relist: cache_port.Relist) -> dict[str, dict[str, str]]:
    """A relist's contents by live key: pods also give the demand and perf counts."""
    entries = dict(relist.entries)
    if relist.resource == "pods":
        counts, by_node = cache.counts_of(entries.values())
        return {
            PODS: entries,
            DEMAND: {k: str(v) for k, v in counts.items()},
            PERF: {k: str(v) for k, v in by_node.items()},
        }
    return {RECORDS[relist.resource]: entries}


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _checked(result: int, resource: str) -> bool:
    if result == -1:
        raise cache_port.LeaseLost("the watcher lease was lost")
    if result == -2:
        raise cache_port.NotSynced(f"{resource} are not synced in the cache (Redis lost it?)")
    return result == 2


def dump(model: Any) -> str:
    return str(model.model_dump_json())


def to_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
