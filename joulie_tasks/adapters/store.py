"""Redis adapter: leader lock, fencing tokens, per-tick data, FSM, transition stream,
shared metric values. The only module that imports ``redis``; every key is built here.

Why Redis holds so much: ticks run across many worker processes, so whatever
must outlive one task (the snapshot of a tick, the count of write batches still
running, the FSM, metric values) lives here, keyed by tick id where it belongs to
one tick and expiring with it. FSM updates are compare-and-set on the tick's
fencing token (Lua), so a stale tick can never overwrite a newer one.

With a Sentinel-managed Redis (``sentinel://`` URL and a master name) every command
goes to the master the Sentinels name now (redis-py ``Sentinel.master_for``).
Replication is asynchronous, so what makes a tick the leader must be on a replica
before it counts: taking the lock and the token, and every fence check, are
followed by ``WAIT 1`` on the same connection, and no acknowledgement within
``WAIT_TIMEOUT_MS`` means "not acquired" / "not live". Tokens are raised to at least
``config-epoch << 32`` of the Sentinels, so they grow across failovers even when
the last INCR of the old master was lost. docs/ARCHITECTURE.md ("Redis and
failover") gives the whole argument.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import redis
import redis.sentinel
from pydantic import BaseModel

from joulie_tasks import errors
from joulie_tasks.adapters import gcpause, redis_errors
from joulie_tasks.core import models, sentinel
from joulie_tasks.ports import state as state_port

logger = logging.getLogger(__name__)

PREFIX = "joulie"
LOCK_KEY = f"{PREFIX}:lock"
FENCE_KEY = f"{PREFIX}:fence"
LATEST_TICK_KEY = f"{PREFIX}:latest-tick"
LEADER_KEY = f"{PREFIX}:leader"
FSM_KEY = f"{PREFIX}:fsm"
#: The last converged tick's record, for quiet ticks (docs/SPEC.md §9.10).
CONVERGED_KEY = f"{PREFIX}:converged"
#: Sorted set of landed downgrades (member ``tick_id/node``, score the tick time): the
#: DOWNGRADE_BUDGET ledger, shared by every tick, kick and worker (docs/SPEC.md §12.2).
DOWNGRADES_KEY = f"{PREFIX}:downgrades"
TRANSITIONS_KEY = f"{PREFIX}:transitions"
COUNTERS_KEY = f"{PREFIX}:metrics:counters"
GAUGES_KEY = f"{PREFIX}:metrics:gauges"
LAST_TICK_KEY = f"{PREFIX}:last-tick"
PAUSED_KEY = f"{PREFIX}:paused"
RECENT_TICKS_KEY = f"{PREFIX}:recent-ticks"
RECENT_TICKS_KEPT = 200

#: Per-tick data outlives any sane tick, then disappears by itself.
TICK_DATA_TTL_S = 3600
#: With Sentinel: replicas that must hold the lock, the token and a fence renewal.
MIN_REPLICAS = 1
#: How long the master may take to hear from them before the lock / fence is refused.
#: Longer than a replica's 1 s acknowledgement period: a replica that has just finished
#: its sync counts for WAIT only from its first periodic acknowledgement on.
WAIT_TIMEOUT_MS = 2000
#: Tokens of Sentinel config epoch e are at least e << EPOCH_SHIFT (exact in Lua's doubles
#: while e < 2**21).
EPOCH_SHIFT = 32

ModelT = TypeVar("ModelT", bound=BaseModel)


def dedup_key(interval_number: int) -> str:
    return f"{PREFIX}:tick-dedup:{interval_number}"


def tick_key(tick_id: str, part: str) -> str:
    return f"{PREFIX}:tick:{tick_id}:{part}"


# Take the lock and the next fencing token at once. ARGV[3] is the floor of this
# Sentinel epoch (0 without Sentinel: a plain INCR): a token is never below it.
_ACQUIRE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current < tonumber(ARGV[3]) then redis.call('SET', KEYS[2], ARGV[3]) end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[3], ARGV[1])
return token
"""


# Renew the lock only while we still hold it.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# Release the lock only while we still hold it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# A write batch may proceed only while its tick holds the lock and its token is the
# newest fence: a tick that lost the lock (or was overtaken) cannot write.
_FENCE_CHECK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
# FSM compare-and-set: ARGV[1] is the token, ARGV[2] a JSON object node -> record.
# A tick overtaken by a newer token (the fence, KEYS[3]) writes nothing: ticks send only
# the records that changed, so an unchanged record may still carry an older token. A
# record is written only when no newer token wrote that node before. ARGV[3] is a JSON
# list of nodes downgraded by this tick: each whose record was written is entered in the
# downgrade ledger (KEYS[2]) as ARGV[6]/node at score ARGV[4], in the same script, so a
# stale tick that cannot write the FSM cannot spend the budget either; entries scored
# below ARGV[5] are trimmed. ARGV[7] is the converged record (KEYS[4]; '' deletes it).
# ARGV[8] is a JSON list of nodes no longer decided: each record is deleted unless a
# newer token wrote it (a node that came back under a newer tick keeps its record).
_FSM_CAS = """
local token = tonumber(ARGV[1])
if tonumber(redis.call('GET', KEYS[3]) or '0') > token then return -1 end
if ARGV[7] == '' then
  redis.call('DEL', KEYS[4])
else
  redis.call('SET', KEYS[4], ARGV[7])
end
local updates = cjson.decode(ARGV[2])
local written = 0
local landed = {}
for node, record in pairs(updates) do
  local old = redis.call('HGET', KEYS[1], node)
  local ok = true
  if old then
    local prev = cjson.decode(old)
    if prev['token'] and tonumber(prev['token']) > token then ok = false end
  end
  if ok then
    redis.call('HSET', KEYS[1], node, cjson.encode(record))
    written = written + 1
    landed[node] = true
  end
end
local spend = cjson.decode(ARGV[3])
if #spend > 0 then
  for _, node in ipairs(spend) do
    if landed[node] then redis.call('ZADD', KEYS[2], ARGV[4], ARGV[6] .. '/' .. node) end
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[5])
end
for _, node in ipairs(cjson.decode(ARGV[8])) do
  local old = redis.call('HGET', KEYS[1], node)
  if old then
    local prev = cjson.decode(old)
    if not (prev['token'] and tonumber(prev['token']) > token) then
      redis.call('HDEL', KEYS[1], node)
    end
  end
end
return written
"""

# Append many stream entries in one round trip (a tick records ~2,000 deferred
# transitions at 5,000 nodes; packing them as single XADDs in Python cost ~0.1 s).
# ARGV[1] is MAXLEN (approximate), ARGV[2] a JSON array of flat [field, value, ...].
_APPEND_STREAM = """
local maxlen = ARGV[1]
local entries = cjson.decode(ARGV[2])
for _, fields in ipairs(entries) do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(fields))
end
return #entries
"""
# Add many counter increments in one round trip: ARGV[1] is a JSON object field ->
# increment (as a string, so Redis parses the float itself).
_ADD_COUNTERS = """
for field, amount in pairs(cjson.decode(ARGV[1])) do
  redis.call('HINCRBYFLOAT', KEYS[1], field, amount)
end
return 1
"""


class RedisStore(state_port.TickParts):
    """All of the operator's Redis state behind one small interface."""

    def __init__(
        self, url: str, *, socket_timeout: float = 5.0, sentinel_master: str | None = None
    ) -> None:
        self.url = url
        self.master_name = sentinel_master
        self._sentinel: redis.sentinel.Sentinel | None = None
        options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
            "health_check_interval": 15,
            "decode_responses": False,
        }
        if sentinel_master is None and sentinel.is_sentinel_url(url):
            # Say what is missing (redis-py would only name the schemes it knows).
            raise ValueError(
                f"{redis_errors.redact_url(url)}: a sentinel:// URL needs the master's name "
                "(REDIS_SENTINEL_MASTER; build stores with adapters/clients.py)"
            )
        if sentinel_master is not None:
            parsed = sentinel.parse_sentinel_url(url)
            self._sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
                list(parsed.hosts),
                sentinel_kwargs={"socket_timeout": socket_timeout},
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
            )
            self._redis: redis.Redis = self._sentinel.master_for(  # type: ignore[no-untyped-call]
                sentinel_master,
                db=parsed.db,
                username=parsed.username,
                password=parsed.password,
                **options,
            )
        else:
            self._redis = redis.Redis.from_url(url, **options)
        #: Replicas that must acknowledge the lock, the token and each fence check.
        self.min_replicas = MIN_REPLICAS if sentinel_master is not None else 0
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        self._fence_check = self._redis.register_script(_FENCE_CHECK)
        self._fsm_cas = self._redis.register_script(_FSM_CAS)
        self._append_stream = self._redis.register_script(_APPEND_STREAM)
        self._add_counters = self._redis.register_script(_ADD_COUNTERS)
        #: Counter increments not yet delivered (Redis was unreachable).
        self._unsent: dict[str, float] = {}

    @property
    def client(self) -> redis.Redis:
        return self._redis

    def close(self) -> None:
        self._redis.close()

    def _translated(self) -> contextlib.AbstractContextManager[None]:
        return redis_errors.translated(
            self._redis, url=self.url, failover=self._sentinel is not None
        )

    @property
    def uses_sentinel(self) -> bool:
        """True when the commands go to the master the Sentinels name (failover)."""
        return self._sentinel is not None

    def ping(self) -> None:
        with self._translated():
            self._redis.ping()

    # --- dedup, lock, fence --------------------------------------------------------------

    def claim_interval(self, interval_number: int, *, ttl_s: float) -> bool:
        """True for the first claim of an interval number; duplicates get False."""
        with self._translated():
            ok = self._redis.set(dedup_key(interval_number), b"1", nx=True, px=_ms(ttl_s))
        return bool(ok)

    def acquire_lock(self, tick_id: str, *, ttl_s: float) -> int | None:
        """Take the leader lock for ``tick_id``; return its fencing token, or None if held.

        With Sentinel the lock and token count only once a replica has them: no
        acknowledgement in time raises StateStoreError (not acquired; the lock is
        let go again so the next tick need not wait for it to expire).
        """
        floor = self.sentinel_epoch() << EPOCH_SHIFT
        with self._translated():
            pipe = self._redis.pipeline(transaction=False)
            self._acquire(
                keys=[LOCK_KEY, FENCE_KEY, LATEST_TICK_KEY],
                args=[tick_id, _ms(ttl_s), str(floor)],
                client=pipe,
            )
            if self.min_replicas:
                pipe.wait(self.min_replicas, WAIT_TIMEOUT_MS)
            results = pipe.execute()
        if results[0] is None:
            return None
        if self.min_replicas and int(results[1]) < self.min_replicas:
            with contextlib.suppress(errors.StateStoreError):
                self.release_lock(tick_id)
            raise errors.StateStoreError(
                f"Redis at {redis_errors.redact_url(self.url)}: the lock was not acknowledged by "
                f"{self.min_replicas} replica(s) within {WAIT_TIMEOUT_MS} ms; not acquired"
            )
        return int(results[0])

    def sentinel_epoch(self) -> int:
        """The highest config epoch the reachable Sentinels report for the master (0 without
        Sentinel); it grows with every failover."""
        if self._sentinel is None or self.master_name is None:
            return 0
        epochs = []
        for client in self._sentinel.sentinels:
            with contextlib.suppress(redis.RedisError):
                state = client.sentinel_master(self.master_name)
                if isinstance(state, dict):
                    epochs.append(int(state.get("config-epoch", 0)))
        if not epochs:
            raise errors.StateStoreError(
                f"Redis at {redis_errors.redact_url(self.url)}: no Sentinel answered for "
                f"master {self.master_name!r}"
            )
        return max(epochs)

    def swap_leader(self, identity: str) -> bool:
        """Record the process that took the lock; True when it differs from the last one."""
        with self._translated():
            previous = self._redis.getset(LEADER_KEY, identity.encode())
        return previous is not None and _s(previous) != identity

    def lock_holder(self) -> str | None:
        with self._translated():
            value = self._redis.get(LOCK_KEY)
        return _s(value) if value else None

    def renew_lock(self, tick_id: str, *, ttl_s: float) -> bool:
        with self._translated():
            return bool(self._renew(keys=[LOCK_KEY], args=[tick_id, _ms(ttl_s)]))

    def release_lock(self, tick_id: str) -> bool:
        with self._translated():
            return bool(self._release(keys=[LOCK_KEY], args=[tick_id]))

    def holds_fence(self, tick_id: str, token: int, *, ttl_s: float) -> bool:
        """True while ``tick_id`` holds the lock and ``token`` is the newest fence."""
        with self._translated():
            pipe = self._redis.pipeline(transaction=False)
            self._fence_check(
                keys=[LOCK_KEY, FENCE_KEY], args=[tick_id, str(token), _ms(ttl_s)], client=pipe
            )
            if self.min_replicas:
                # A master cut off from its replicas (one the Sentinels have replaced)
                # cannot confirm a fence: the renewal it made is acknowledged by nobody.
                pipe.wait(self.min_replicas, WAIT_TIMEOUT_MS)
            results = pipe.execute()
        if self.min_replicas and int(results[1]) < self.min_replicas:
            return False
        return bool(results[0])

    def latest_tick(self) -> str | None:
        with self._translated():
            value = self._redis.get(LATEST_TICK_KEY)
        return _s(value) if value else None

    # --- per-tick data -------------------------------------------------------------------

    def _save_part(self, tick_id: str, part: str, model: BaseModel) -> None:
        """Store one stage's output, compressed, under the tick (expires on its own)."""
        blob = zlib.compress(model.model_dump_json().encode(), 1)
        with self._translated():
            self._redis.set(tick_key(tick_id, part), blob, ex=TICK_DATA_TTL_S)

    def _load_part(self, tick_id: str, part: str, model_type: type[ModelT]) -> ModelT:
        with self._translated():
            blob = self._redis.get(tick_key(tick_id, part))
        if blob is None:
            raise errors.StateStoreError(f"tick {tick_id}: {part} is missing (expired?)")
        with gcpause.paused():  # a snapshot is tens of thousands of models: see gcpause.py
            return model_type.model_validate_json(zlib.decompress(_b(blob)))

    def start_batches(self, tick_id: str, count: int) -> None:
        with self._translated():
            # NX: a redelivered write stage must not reset a count batches already lowered.
            self._redis.set(tick_key(tick_id, "pending"), count, nx=True, ex=TICK_DATA_TTL_S)
            self._redis.set(
                tick_key(tick_id, "writes-started"), repr(time.time()), nx=True, ex=TICK_DATA_TTL_S
            )

    def writes_started(self, tick_id: str) -> float | None:
        """When the tick's write batches were handed out (Unix time); None if never."""
        with self._translated():
            value = self._redis.get(tick_key(tick_id, "writes-started"))
        return float(value) if value is not None else None

    def finish_batch(self, tick_id: str, index: int, done: state_port.BatchDone) -> int | None:
        """Record a finished batch once; return batches still pending (None: seen before).

        Redelivered batches (worker died after writing) are counted once only, so the
        batch that brings the counter to zero is unique and the tick ends exactly once.
        The batch's metric ``counters`` are added in the same transaction: once, and
        before any batch can see the count reach zero and end the tick.
        """
        with self._translated():
            if not self._redis.sadd(tick_key(tick_id, "done"), index):
                return None
            pipe = self._redis.pipeline()
            if done.failures:
                pipe.hset(tick_key(tick_id, "failures"), mapping=dict(done.failures))  # type: ignore[arg-type]
            pipe.incrby(tick_key(tick_id, "written"), done.written)
            pipe.incrby(tick_key(tick_id, "retries"), done.retries)
            for field, amount in done.counters.items():
                pipe.hincrbyfloat(COUNTERS_KEY, field, amount)
            for part in ("done", "failures", "written", "retries"):
                pipe.expire(tick_key(tick_id, part), TICK_DATA_TTL_S)
            pipe.decr(tick_key(tick_id, "pending"))
            results = pipe.execute()
        return int(results[-1])

    def add_skipped(self, tick_id: str, skipped: Mapping[str, str]) -> None:
        """Record nodes a batch skipped because they were deleted since the snapshot."""
        with self._translated():
            pipe = self._redis.pipeline()
            pipe.hset(tick_key(tick_id, "skipped"), mapping=dict(skipped))  # type: ignore[arg-type]
            pipe.expire(tick_key(tick_id, "skipped"), TICK_DATA_TTL_S)
            pipe.execute()

    def skipped_nodes(self, tick_id: str) -> set[str]:
        with self._translated():
            raw = self._redis.hkeys(tick_key(tick_id, "skipped"))
        return {_s(k) for k in raw}

    def batch_results(self, tick_id: str) -> tuple[dict[str, str], int, int]:
        """Failures (node -> reason), writes and retries of a tick's batches."""
        with self._translated():
            raw = self._redis.hgetall(tick_key(tick_id, "failures"))
            written = self._redis.get(tick_key(tick_id, "written"))
            retries = self._redis.get(tick_key(tick_id, "retries"))
        failures = {_s(k): _s(v) for k, v in raw.items()}
        return failures, int(written or 0), int(retries or 0)

    def mark(self, tick_id: str, flag: str) -> bool:
        """Set a once-only flag of a tick; True the first time."""
        with self._translated():
            return bool(self._redis.set(tick_key(tick_id, flag), b"1", nx=True, ex=TICK_DATA_TTL_S))

    # --- FSM and transitions -------------------------------------------------------------

    def fsm(self) -> dict[str, models.FsmRecord]:
        """The FSM records as models, validated straight from their JSON (a tick's end
        reads every node's)."""
        with self._translated():
            raw = self._redis.hgetall(FSM_KEY)
        with gcpause.paused():
            return {_s(k): models.FsmRecord.model_validate_json(v) for k, v in raw.items()}

    def _fsm_records(self) -> dict[str, dict[str, Any]]:
        with self._translated():
            raw = self._redis.hgetall(FSM_KEY)
        return {_s(k): json.loads(v) for k, v in raw.items()}

    def update_fsm(
        self,
        token: int,
        records: Mapping[str, Mapping[str, Any]],
        *,
        spend: state_port.Spend | None = None,
        converged: models.Converged | None = None,
        forget: Sequence[str] = (),
    ) -> int:
        """Compare-and-set FSM records on the fencing token; return how many were written
        (0 for a tick a newer token has overtaken: it writes nothing at all).

        ``spend`` enters the downgraded nodes whose record was written in the downgrade
        ledger, atomically with the records (docs/SPEC.md §12.2); ``converged`` replaces
        the converged record (None removes it); the records of the ``forget`` nodes (no
        longer decided) are deleted unless a newer token wrote them; all in one script.
        """
        spent = spend or state_port.Spend(nodes=(), time=0.0, keep_after=0.0, tick_id="")
        args = [
            str(token),
            json.dumps(records) if records else "{}",
            json.dumps(list(spent.nodes)),
            repr(spent.time),
            repr(spent.keep_after),
            spent.tick_id,
            "" if converged is None else converged.model_dump_json(),
            json.dumps(list(forget)),
        ]
        keys = [FSM_KEY, DOWNGRADES_KEY, FENCE_KEY, CONVERGED_KEY]
        with self._translated():
            return max(0, int(self._fsm_cas(keys=keys, args=args)))

    def converged(self) -> models.Converged | None:
        """The last converged tick's record (docs/SPEC.md §9.10), None when there is none
        or it does not parse (a full tick runs)."""
        with self._translated():
            raw = self._redis.get(CONVERGED_KEY)
        if raw is None:
            return None
        try:
            return models.Converged.model_validate_json(raw)
        except ValueError as e:
            logger.warning("ignoring the converged record: %s", e)
            return None

    def downgrades_since(self, since: float) -> int:
        """Downgrades in the ledger after Unix time ``since`` (exclusive)."""
        with self._translated():
            return int(self._redis.zcount(DOWNGRADES_KEY, f"({since!r}", "+inf"))

    def append_transitions(self, entries: Sequence[Mapping[str, str]], *, maxlen: int) -> None:
        if not entries:
            return
        flat = [[item for pair in entry.items() for item in pair] for entry in entries]
        with self._translated():
            self._append_stream(keys=[TRANSITIONS_KEY], args=[maxlen, json.dumps(flat)])

    def _read_transitions(self, *, since_ms: int = 0, count: int = 10_000) -> list[dict[str, str]]:
        with self._translated():
            rows = self._redis.xrange(TRANSITIONS_KEY, min=f"{since_ms}-0", count=count)
        return [
            {"id": _s(rid), **{_s(k): _s(v) for k, v in (fields or {}).items()}}
            for rid, fields in (rows or [])
            if rid is not None
        ]

    # --- metric values shared by all processes -------------------------------------------

    def add_counters(self, increments: Mapping[str, float]) -> None:
        """Add to shared counters; increments Redis refused are kept and sent next time."""
        pending = dict(self._unsent)
        for field, amount in increments.items():
            pending[field] = pending.get(field, 0.0) + amount
        if not pending:
            return
        try:
            with self._translated():
                body = json.dumps({field: repr(amount) for field, amount in pending.items()})
                self._add_counters(keys=[COUNTERS_KEY], args=[body])
        except errors.StateStoreError:
            self._unsent = pending
            raise
        self._unsent = {}

    def count_later(self, increments: Mapping[str, float]) -> None:
        """Keep increments in this process until the next add_counters reaches Redis
        (how a tick lost to a Redis outage is still counted once Redis is back)."""
        for field, amount in increments.items():
            self._unsent[field] = self._unsent.get(field, 0.0) + amount

    def set_gauges(self, values: Mapping[str, float]) -> None:
        if values:
            with self._translated():
                mapping: dict[str | bytes, str | bytes] = {k: repr(v) for k, v in values.items()}
                self._redis.hset(GAUGES_KEY, mapping=mapping)  # type: ignore[arg-type]

    def metric_values(self) -> state_port.MetricReadings:
        with self._translated():
            counters = self._redis.hgetall(COUNTERS_KEY)
            gauges = self._redis.hgetall(GAUGES_KEY)
        return state_port.MetricReadings(
            {_s(k): float(v) for k, v in counters.items()},
            {_s(k): float(v) for k, v in gauges.items()},
        )

    def set_last_tick(self, summary: Mapping[str, Any]) -> None:
        """Record a finished tick: the last one, and a short history of recent ones."""
        blob = json.dumps(summary)
        with self._translated():
            pipe = self._redis.pipeline()
            pipe.set(LAST_TICK_KEY, blob)
            pipe.lpush(RECENT_TICKS_KEY, blob)
            pipe.ltrim(RECENT_TICKS_KEY, 0, RECENT_TICKS_KEPT - 1)
            pipe.execute()

    def _recent_ticks(self) -> list[dict[str, Any]]:
        """Finished ticks, newest first (at most RECENT_TICKS_KEPT)."""
        with self._translated():
            rows = self._redis.lrange(RECENT_TICKS_KEY, 0, -1)
        return [json.loads(r) for r in rows]

    def _last_tick(self) -> dict[str, Any] | None:
        with self._translated():
            raw = self._redis.get(LAST_TICK_KEY)
        return json.loads(raw) if raw else None

    # --- pause switch --------------------------------------------------------------------

    def set_paused(self, paused: bool) -> None:
        with self._translated():
            if paused:
                self._redis.set(PAUSED_KEY, str(time.time()))
            else:
                self._redis.delete(PAUSED_KEY)

    def is_paused(self) -> bool:
        with self._translated():
            return bool(self._redis.exists(PAUSED_KEY))


def _b(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
