"""Redis failover under a running operator: a Sentinel-managed Redis (a master, two
replicas and three Sentinels, quorum 2, all real redis-server processes on loopback:
the shipped topology) loses its master while idle, during a snapshot, during write
batches, while a stalled tick holds the lock; the old master comes back as a replica
and is promoted in turn; the master stalls (SIGSTOP) past the Sentinels' down-after
and comes back; and the master is SIGKILLed and **not** brought back (idle, and
during write batches): ticks resume on the new master and its remaining replica, and
only then does the old master return, as a replica.

Every row runs the watcher (``joulie-tasks watch``) beside the worker, and checks
that it kept its lease and fed the cache across the failover (its heartbeat, stamped
on the new master after the fault). Ticks read the cache, except in the rows timed
on a tick's own node list (snapshot, stalled holder, stalled master), whose workers
run with CACHE_MAX_AGE=1ms and so list. Kicks are off (KICK_WINDOW=1h): the rows
count every tick they send, and a kicked tick would take the lock beside them.

Each row's start and table text are one line of ``FAILOVERS``; its steps are its test's.
For each row: seconds from the fault to the next completed tick, the ticks that
did not complete, and the fence audit of the API server's request log (every
request carries its tick's ``<token> <tick id>``): no write from a token lower
than one the server had already seen, and no token handed to two ticks. A killed
server is restarted as a replica of the current master, as a pod would be, except
in the "not restarted" rows. The whole file (8 rows) took 150 s on a shared 2-core
machine under a load average of about 3 (each row starts its own Redis servers,
Sentinels, emulator and processes).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import cast

import pytest
import redis

from joulie_tasks import errors
from joulie_tasks.adapters import clients, store
from joulie_testbed.chaos import WRITES, Driver, fence_violations, next_completed, problems
from joulie_testbed.emulator import Emulator
from joulie_testbed.procs import Proc, Stack, wait_for
from joulie_testbed.sentinel import (
    DOWN_AFTER_MS,
    Node,
    SentinelCluster,
)
from joulie_testbed.ticks import TickClient
from tests.chaos.reliability import Row

STALL_S = 3 * DOWN_AFTER_MS / 1000
PROFILE = "joulie.io/power-profile"


@pytest.fixture
def sstack(sentinel_stack: Stack) -> Stack:
    sentinel_stack.configure(lock_ttl="4s")
    sentinel_stack.configure(kick_window="1h")  # no kicks: the rows send (and count) every tick
    return sentinel_stack


@pytest.fixture
def sticks(
    sentinel_cluster: SentinelCluster, sentinel_state: store.RedisStore
) -> Iterator[TickClient]:
    client = TickClient(sentinel_cluster.url, sentinel_state)
    client.app.conf.broker_transport_options = {"master_name": sentinel_cluster.master_name}
    yield client
    client.app.close()


@dataclass(frozen=True)
class FailoverRow:
    """Where a Sentinel row starts and what the table says of its fault. ``cache_fed``
    False: the workers list (CACHE_MAX_AGE=1ms), for rows timed on a tick's own node
    list; ``batches``: writes in batches of 2, one at a time."""

    seed: int
    fault: str
    action: str
    cache_fed: bool = True
    batches: bool = False


FAILOVERS = {
    "idle": FailoverRow(
        seed=71,
        fault="Sentinel: master SIGKILLed while idle",
        action="master redis-server SIGKILLed between ticks; restarted as a replica; then "
        "every node's profile hand-flipped, so the ticks after it write",
    ),
    "snapshot": FailoverRow(
        seed=72,
        fault="Sentinel: master SIGKILLed during a snapshot",
        action="master SIGKILLed while a tick's node list was in flight (2 s delay)",
        cache_fed=False,
    ),
    "write-batches": FailoverRow(
        seed=73,
        fault="Sentinel: master SIGKILLed during write batches",
        action="master SIGKILLed after 2 of 8 node patches (batches of 2, 0.4 s each)",
        batches=True,
    ),
    "stalled-holder": FailoverRow(
        seed=74,
        fault="Sentinel: master SIGKILLed while a tick holds the lock",
        action="the lock holder's worker SIGSTOPped mid-snapshot, master SIGKILLed, "
        "holder resumed after the next tick",
        cache_fed=False,
    ),
    "old-master-returns": FailoverRow(
        seed=75,
        fault="Sentinel: old master returns as replica",
        action="master SIGKILLed and restarted as a replica; then the new master SIGKILLed "
        "(the third server at replica-priority 0)",
    ),
    "stalled-master": FailoverRow(
        seed=76,
        fault="Sentinel: master stalled past down-after",
        action=f"master SIGSTOPped {STALL_S:.0f} s (down-after {DOWN_AFTER_MS} ms) during a "
        "tick's snapshot, then SIGCONT",
        cache_fed=False,
    ),
    "gone-idle": FailoverRow(
        seed=77,
        fault="Sentinel: master SIGKILLed, not restarted (idle)",
        action="master SIGKILLed between ticks and left dead; every node's profile "
        "hand-flipped; the old master started again only after the checks",
    ),
    "gone-write-batches": FailoverRow(
        seed=78,
        fault="Sentinel: master SIGKILLed, not restarted (write batches)",
        action="master SIGKILLed after 2 of 8 node patches of a cache-fed tick (batches of "
        "2, 0.4 s each) and left dead; started again only after the checks",
        batches=True,
    ),
}


class Failover:
    """A Sentinel row's real parts: the stack on the Sentinel-managed Redis (``sstack``),
    the cluster of servers, the emulator, the tick client, the store and the row."""

    def __init__(
        self,
        *,
        stack: Stack,
        cluster: SentinelCluster,
        emulator: Emulator,
        ticks: TickClient,
        state: store.RedisStore,
        row: Row,
    ) -> None:
        self.stack, self.cluster, self.emulator = stack, cluster, emulator
        self.ticks, self.state, self.row = ticks, state, row

    def converged(self, row: FailoverRow) -> Driver:
        """The row's seeded cluster, the watcher (its lease taken, the cache synced), one
        worker and the ticks that converged it."""
        if row.batches:
            self.stack.configure(write_batch_size=2, write_concurrency=1)
        self.emulator.seed(8, 1, seed=row.seed)
        _start_watcher(self.stack, self.state)
        if not row.cache_fed:
            self.stack.configure(cache_max_age="1ms")
        self.stack.start_worker("w1")
        drive = Driver(self.ticks, self.state, self.emulator, self.stack.env)
        drive.converge(max_ticks=2)
        drive.outcomes.clear()
        return drive

    def record(
        self, row: FailoverRow, drive: Driver, *, what: str, took: float, audit_from: int = 0
    ) -> list[str]:
        """Fill the table row (``what`` the operator did, then the measured figures) and
        return every problem found: lost or false state, duplicate transitions, fence
        violations in the requests from ``audit_from`` on."""
        writes, violations = _audit_since(self.emulator, audit_from)
        found = (
            problems(self.state, self.emulator, self.stack.env)
            + duplicate_transitions(self.state)
            + violations
        )
        not_completed = [o for o in drive.outcomes if o not in ("completed", "failed_writes")]
        self.row.fill(
            drive,
            found,
            fault=row.fault,
            action=row.action,
            behaviour=(
                f"{what}; next completed tick {took:.1f} s after the fault; ticks lost: "
                f"{len(not_completed)} ({', '.join(not_completed) or 'none'}); fence audit of "
                f"{writes} API writes: {len(violations)} from a stale token"
            ),
        )
        return found


@pytest.fixture
def failover(
    sstack: Stack,
    sentinel_cluster: SentinelCluster,
    emulator: Emulator,
    sticks: TickClient,
    sentinel_state: store.RedisStore,
    reliability: Row,
) -> Failover:
    return Failover(
        stack=sstack,
        cluster=sentinel_cluster,
        emulator=emulator,
        ticks=sticks,
        state=sentinel_state,
        row=reliability,
    )


def duplicate_transitions(state: store.RedisStore) -> list[str]:
    seen: set[tuple[str, str, str]] = set()
    dups = []
    for e in state.transitions():
        key = (e.tick_id, e.node, e.to_state)
        if key in seen:
            dups.append(f"transition {key} recorded twice")
        seen.add(key)
    return dups


def _audit_since(emulator: Emulator, start: int) -> tuple[int, list[str]]:
    """The fence audit of the requests from index ``start`` of the request log on: writes
    audited and violations among them, with the earlier requests as context only (the
    tokens they had shown the server still count for "a lower token after a higher one")."""
    log = emulator.request_log()
    before = cast(Emulator, SimpleNamespace(request_log=lambda: log[:start]))
    whole = cast(Emulator, SimpleNamespace(request_log=lambda: log))
    writes_before, bad_before = fence_violations(before)
    writes, bad = fence_violations(whole)
    # fence_violations walks the log in order, so the prefix's findings lead the whole's
    assert bad[: len(bad_before)] == bad_before
    return writes - writes_before, bad[len(bad_before) :]


def _work_of(emulator: Emulator, state: store.RedisStore, tick_id: str) -> list[str]:
    """What a tick left behind: its API writes and its recorded transitions."""
    found = [
        f"{r.method} {r.path} by tick {tick_id}"
        for r in emulator.request_log()
        if r.tick is not None and r.tick.split(" ", 1)[1] == tick_id and r.method in WRITES
    ]
    found += [
        f"transition of {e.node} to {e.to_state} recorded by tick {tick_id}"
        for e in state.transitions()
        if e.tick_id == tick_id
    ]
    return found


def _start_watcher(stack: Stack, state: store.RedisStore) -> Proc:
    watch = stack.start_proc("watch", ["watch"], ready="started")
    cache = clients.cache(state)

    def active() -> bool:
        status = cache.status()
        return str(watch.proc.pid) in (status.lease or "") and all(status.synced.values())

    wait_for(active, timeout=60, what="the watcher's lease and a synced cache")
    return watch


def _watcher(stack: Stack) -> Proc:
    return next(p for p in stack.procs if p.name == "watch")


def _watcher_fed_after(stack: Stack, state: store.RedisStore, fault_wall: float) -> str:
    """Wait until the watcher, still alive and still the lease holder, has stamped a
    synced cache after the fault (on the master the Sentinels name now); say so."""
    watch = _watcher(stack)
    cache = clients.cache(state)

    def fed() -> float | None:
        watch.check()
        status = cache.status()
        if str(watch.proc.pid) not in (status.lease or "") or not all(status.synced.values()):
            return None
        beat = status.heartbeat or 0.0
        return beat if beat > fault_wall else None

    beat = wait_for(fed, timeout=60, what="the watcher's heartbeat after the fault")
    return f"watcher kept its lease, cache heartbeat {beat - fault_wall:.1f} s after the fault"


def _cache_fed_tick(drive: Driver, ticks: TickClient, state: store.RedisStore) -> str:
    """Send one tick and prove it completed from the watch cache; return its id."""
    at, before = drive.send()
    result = drive.outcome(at, before, timeout=60)
    assert result == "completed", result
    summary = ticks.finished(at)
    assert summary is not None
    mark = state.load_cache_mark(summary["tick_id"])
    assert mark.fed, f"tick {summary['tick_id']} listed the cluster: the cache was not used"
    return str(summary["tick_id"])


def _sent_and_seen(
    drive: Driver,
    emulator: Emulator,
    key: tuple[str, str],
    *,
    count: int = 1,
    outcome: str = "in flight",
) -> None:
    """Send a tick and wait until the API server has seen ``count`` more ``key`` requests."""
    before = emulator.counters().get(key, 0)
    drive.send()
    drive.outcomes.append(outcome)
    wait_for(lambda: emulator.counters().get(key, 0) >= before + count, what=f"{key}")


#: A tick's (or one of its batches') end short of completion, after ``tick <id>: `` in a
#: worker's log: "snapshot failed: ...", "plan dropped: ...", "write batch 2 skipped: ...",
#: "batch 1 cut short: ...". Not a completed tick's "done in ...: ..., 0 failed, ..." nor one
#: node's "node n1: write failed: ...".
_FATE = re.compile(r"(?:[a-z]+|(?:write )?batch \d+) (?:dropped|skipped|failed|cut short): ")


def _fate(stack: Stack, tick_id: str) -> str | None:
    """How a tick ended, from any worker's log: dropped, skipped, failed (None: not yet, or
    it completed)."""
    for proc in stack.procs:
        for line in proc.log().splitlines():
            rest = line.partition(f"tick {tick_id}: ")[2]
            if _FATE.match(rest):
                return rest
    return None


def _refusal(e: Exception) -> str | None:
    """The refusal a failed lock on a replaced master names, or None for any other error
    (a dead or unreachable server has refused nothing)."""
    text = str(e)
    if isinstance(e, redis.ReadOnlyError) or any(
        word in text
        for word in ("ReadOnlyError", "READONLY", "read only replica", "read only slave")
    ):
        return "READONLY: already a replica"
    if "NOREPLICAS" in text:
        return "NOREPLICAS: no good replica to write to"
    if isinstance(e, errors.StateStoreError) and "was not acknowledged by" in text:
        return "no replica acknowledged it"
    return None


def _stale_master_refuses_a_lock(old: Node) -> str:
    """Right after SIGCONT, take the lock straight on the replaced master, with the checks
    Sentinel mode makes (a client that has not noticed the failover); say why it refused.
    Only a refusal counts: any other failure (connection refused, a timeout) fails the test."""
    stale = store.RedisStore(f"redis://127.0.0.1:{old.port}/0")
    stale.min_replicas = store.MIN_REPLICAS
    try:
        stale.client.delete(store.LOCK_KEY)  # so only the replica check can refuse it
        token = stale.acquire_lock("stale-probe", ttl_s=30)
    except (redis.RedisError, errors.StateStoreError) as e:
        refusal = _refusal(e)
        if refusal is None:
            raise AssertionError(
                f"taking the lock on the replaced master (port {old.port}) failed, but not "
                f"with a refusal (READONLY, NOREPLICAS, no replica acknowledgement): "
                f"{type(e).__name__}: {e}"
            ) from e
        return refusal
    finally:
        stale.close()
    raise AssertionError(f"the replaced master handed out token {token}")


def _wall(fault_at: float) -> float:
    """The wall-clock time of a ``time.monotonic()`` instant (heartbeats are wall clock)."""
    return time.time() - (time.monotonic() - fault_at)


def _kill_and_revive(cluster: SentinelCluster) -> tuple[Node, float]:
    old = cluster.master()
    fault_at = time.monotonic()
    old.kill()
    cluster.wait_failover(old.port)
    cluster.revive(old)
    return old, fault_at


def _unlabel_half(emulator: Emulator) -> None:
    """Hand-flip every node's profile so the next tick has a write per node."""
    for n in emulator.list_objects("nodes"):
        profile = n["metadata"]["labels"].get("joulie.io/power-profile")
        if profile:
            flipped = "eco" if profile == "performance" else "performance"
            emulator.mutate_node_labels(n["metadata"]["name"], {"joulie.io/power-profile": flipped})


def test_master_killed_while_idle(failover: Failover) -> None:
    row = FAILOVERS["idle"]
    drive = failover.converged(row)
    fsm = failover.state.fsm()

    audit_from = len(failover.emulator.request_log())
    _, fault_at = _kill_and_revive(failover.cluster)
    _unlabel_half(failover.emulator)  # so the ticks after the fault have writes to audit

    took = next_completed(drive, fault_at)
    watched = _watcher_fed_after(failover.stack, failover.state, _wall(fault_at))
    fed = _cache_fed_tick(drive, failover.ticks, failover.state)
    writes, _ = _audit_since(failover.emulator, audit_from)
    found = failover.record(
        row,
        drive,
        what=f"worker followed the new master; FSM ({len(fsm)} nodes) kept; {watched}; "
        f"tick {fed} read the cache",
        took=took,
        audit_from=audit_from,
    )
    assert writes > 0, "no API write after the fault: the fence audit checked nothing"
    assert failover.state.fsm().keys() == fsm.keys()
    assert found == []


def test_master_killed_during_a_snapshot(failover: Failover) -> None:
    row = FAILOVERS["snapshot"]
    drive = failover.converged(row)
    _unlabel_half(failover.emulator)
    failover.emulator.inject("GET", r"^/api/v1/nodes$", delay_s=2)
    _sent_and_seen(drive, failover.emulator, ("list", "nodes"))
    in_flight = failover.state.lock_holder()
    assert in_flight is not None, "the tick in flight holds no lock"

    _, fault_at = _kill_and_revive(failover.cluster)

    took = next_completed(drive, fault_at)
    fate = wait_for(
        lambda: _fate(failover.stack, in_flight), timeout=30, what="the in-flight tick's end"
    )
    drive.converge(max_ticks=len(drive.outcomes) + 2)
    watched = _watcher_fed_after(failover.stack, failover.state, _wall(fault_at))
    found = failover.record(
        row,
        drive,
        what=f"the tick in flight was dropped or failed ({fate}), none of its work recorded; "
        f"the next tick redid it; {watched}",
        took=took,
    )
    assert fate is not None
    assert _work_of(failover.emulator, failover.state, in_flight) == []
    assert found == []


def test_master_killed_during_write_batches(failover: Failover) -> None:
    row = FAILOVERS["write-batches"]
    drive = failover.converged(row)
    _unlabel_half(failover.emulator)
    failover.emulator.inject("PATCH", r"^/api/v1/nodes/", delay_s=0.4, times=-1)
    _sent_and_seen(drive, failover.emulator, ("patch", "nodes"), count=2)

    _, fault_at = _kill_and_revive(failover.cluster)
    failover.emulator.clear_faults()

    took = next_completed(drive, fault_at)
    drive.converge(max_ticks=len(drive.outcomes) + 2)
    watched = _watcher_fed_after(failover.stack, failover.state, _wall(fault_at))
    found = failover.record(
        row,
        drive,
        what="batches in flight finished on the new master or were fenced; the next tick "
        f"wrote what was left; {watched}",
        took=took,
    )
    assert found == []


def test_master_killed_while_a_stalled_tick_holds_the_lock(failover: Failover) -> None:
    import signal

    row = FAILOVERS["stalled-holder"]
    drive = failover.converged(row)
    _unlabel_half(failover.emulator)
    failover.emulator.inject("GET", r"^/api/v1/nodes$", delay_s=1)
    _sent_and_seen(drive, failover.emulator, ("list", "nodes"), outcome="stalled")
    holder = failover.state.lock_holder()
    stalled = next(p for p in failover.stack.procs if p.name == "w1")
    stalled.signal_group(signal.SIGSTOP)
    failover.stack.start_worker("w2")

    _, fault_at = _kill_and_revive(failover.cluster)

    took = next_completed(drive, fault_at)
    stalled.signal_group(signal.SIGCONT)
    fate = wait_for(
        lambda: _fate(failover.stack, str(holder)), timeout=30, what="the stalled tick's end"
    )
    drive.converge(max_ticks=len(drive.outcomes) + 2)
    watched = _watcher_fed_after(failover.stack, failover.state, _wall(fault_at))
    found = failover.record(
        row,
        drive,
        what="the stalled holder's lock survived the failover and expired; a second "
        f"worker's tick took a newer token; the resumed tick: {fate}; {watched}",
        took=took,
    )
    assert holder is not None
    assert found == []


def test_old_master_returns_as_replica_and_is_promoted_again(failover: Failover) -> None:
    row = FAILOVERS["old-master-returns"]
    drive = failover.converged(row)
    first, fault_at = _kill_and_revive(failover.cluster)
    assert first.role() == "slave"  # back as a replica of the new master, in sync
    next_completed(drive, fault_at)
    failover.cluster.wait_healthy()
    assert failover.cluster.master() is not first

    # When the new master dies in turn, the returned old master takes over again (the
    # third server is made unpromotable: with two replicas Sentinel may pick either)
    for other in failover.cluster.replicas():
        if other is not first:
            other.client().config_set("replica-priority", 0)
    _, fault_at = _kill_and_revive(failover.cluster)
    _unlabel_half(failover.emulator)
    took = next_completed(drive, fault_at)
    assert failover.cluster.master() is first
    watched = _watcher_fed_after(failover.stack, failover.state, _wall(fault_at))
    fed = _cache_fed_tick(drive, failover.ticks, failover.state)
    found = failover.record(
        row,
        drive,
        what=f"the old master resynced as a replica and was promoted back (Sentinel epoch "
        f"{failover.cluster.epoch()}); FSM and stream survived both failovers; {watched}; "
        f"tick {fed} read the cache",
        took=took,
    )
    assert found == []


def test_master_stalled_past_down_after_is_replaced_and_fences_nothing(failover: Failover) -> None:
    row = FAILOVERS["stalled-master"]
    drive = failover.converged(row)
    _unlabel_half(failover.emulator)
    failover.emulator.inject("GET", r"^/api/v1/nodes$", delay_s=1)
    _sent_and_seen(drive, failover.emulator, ("list", "nodes"))
    old = failover.cluster.master()
    fault_at = time.monotonic()
    with failover.cluster.stopped(old):
        failover.cluster.wait_failover(old.port)
        wait_for(lambda: time.monotonic() - fault_at > STALL_S, what="the stall")
    refused = _stale_master_refuses_a_lock(old)

    took = next_completed(drive, fault_at, timeout=90)
    wait_for(lambda: old.role() == "slave", timeout=30, what="the old master demoted")
    drive.converge(max_ticks=len(drive.outcomes) + 2)
    watched = _watcher_fed_after(failover.stack, failover.state, _wall(fault_at))
    found = failover.record(
        row,
        drive,
        what=f"replaced by a replica; back, a lock taken straight on it was refused "
        f"({refused}); the Sentinels demoted it to replica; {watched}",
        took=took,
    )
    assert found == []


def _cache_shows_the_labels(state: store.RedisStore, emulator: Emulator) -> bool:
    """The watch cache holds every node's profile label as the API server has it."""
    now = time.time()
    view = clients.cache(state).read(tick_time=now, now=now, max_age=5.0)
    if isinstance(view, str):
        return False
    cached = {n.name: n.labels.get(PROFILE) for n in view.snapshot.nodes}
    actual = {
        n["metadata"]["name"]: n["metadata"].get("labels", {}).get(PROFILE)
        for n in emulator.list_objects("nodes")
    }
    return bool(cached) and all(actual.get(name) == label for name, label in cached.items())


def _killed_for_good(cluster: SentinelCluster) -> tuple[Node, Node, float]:
    """SIGKILL the master and leave it dead; wait for the Sentinels' new master. Returns
    (old, new, fault_at)."""
    old = cluster.master()
    fault_at = time.monotonic()
    old.kill()
    new = cluster.wait_failover(old.port)
    return old, new, fault_at


def _returns_as_replica(cluster: SentinelCluster, old: Node, new: Node) -> str:
    """Start the old master again as the pod would (a replica of the current master) and
    check it follows the new one, in sync."""
    assert cluster.master() is new, "another failover happened while the old master was away"
    cluster.revive(old)
    info = old.client().info("replication")
    assert (info["role"], int(info["master_port"])) == ("slave", new.port)
    cluster.wait_healthy()
    return f"the old master returned as a replica of the new one (port {new.port}), in sync"


def test_master_killed_for_good_while_idle(failover: Failover) -> None:
    row = FAILOVERS["gone-idle"]
    drive = failover.converged(row)
    fsm = failover.state.fsm()
    audit_from = len(failover.emulator.request_log())

    # Given the master SIGKILLed and not restarted, then every node hand-flipped (the
    # watcher must carry those changes into the cache on the new master)
    old, new, fault_at = _killed_for_good(failover.cluster)
    _unlabel_half(failover.emulator)

    # Then ticks resume on the new master and its one remaining replica
    took = next_completed(drive, fault_at)
    assert not old.running
    assert len(failover.cluster.replicas()) == 1
    watched = _watcher_fed_after(failover.stack, failover.state, _wall(fault_at))
    drive.converge(max_ticks=len(drive.outcomes) + 3)
    fed = _cache_fed_tick(drive, failover.ticks, failover.state)
    assert not old.running  # all of the above without the old master

    # And when the old master finally returns, it rejoins as a replica
    returned = _returns_as_replica(failover.cluster, old, new)
    assert drive.one() == "completed"
    writes, _ = _audit_since(failover.emulator, audit_from)
    found = failover.record(
        row,
        drive,
        what=f"ticks resumed on the new master with its remaining replica acknowledging; "
        f"FSM ({len(fsm)} nodes) kept; {watched}; tick {fed} read the cache; {returned}",
        took=took,
        audit_from=audit_from,
    )
    assert writes > 0, "no API write after the fault: the fence audit checked nothing"
    assert failover.state.fsm().keys() == fsm.keys()
    assert found == []


def test_master_killed_for_good_during_write_batches(failover: Failover) -> None:
    row = FAILOVERS["gone-write-batches"]
    drive = failover.converged(row)
    _unlabel_half(failover.emulator)
    wait_for(
        lambda: _cache_shows_the_labels(failover.state, failover.emulator),
        what="the flips in the cache",
    )
    failover.emulator.inject("PATCH", r"^/api/v1/nodes/", delay_s=0.4, times=-1)
    _sent_and_seen(drive, failover.emulator, ("patch", "nodes"), count=2)

    old, new, fault_at = _killed_for_good(failover.cluster)
    failover.emulator.clear_faults()

    took = next_completed(drive, fault_at)
    drive.converge(max_ticks=len(drive.outcomes) + 2)
    assert not old.running
    watched = _watcher_fed_after(failover.stack, failover.state, _wall(fault_at))
    fed = _cache_fed_tick(drive, failover.ticks, failover.state)
    returned = _returns_as_replica(failover.cluster, old, new)
    found = failover.record(
        row,
        drive,
        what="batches in flight finished on the new master or were fenced; ticks resumed "
        f"with the remaining replica acknowledging and wrote what was left; {watched}; "
        f"tick {fed} read the cache; {returned}",
        took=took,
    )
    assert found == []
