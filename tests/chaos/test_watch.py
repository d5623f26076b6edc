"""The watcher under faults: watch dropped mid-stream, 410 Gone, the API down, the active
watcher SIGKILLed, Redis flushed under it, Redis back without the watcher's last cache
writes (its lease kept), events missed on purpose, and a fresh cache that missed a bind.

Most cases play the same dangerous moment across the fault: node ``node-00003`` is
draining for a performance pod A; A finishes and B is bound to the same node while
the fault is on, so a cache that saw A go but not B come would clear the draining
label under B. In ``test_fresh_cache_missed_a_bind`` the cache is exactly that: fresh
(heartbeat younger than CACHE_MAX_AGE) and wrong, so the tick trusts it and only the
write stage's fresh pod count stands between it and an eco write under B. In
``test_events_missed_on_purpose`` the frozen cache is stale and wrong the other way
(it still shows A after A finished): a tick that trusted it would keep the node
draining, so the drain completing proves the tick listed instead. Ticks run during
and after the fault. The invariant is checked in the API server's own request log
(every node label write, with the node's active performance pods counted by the
emulator at the moment the write was applied): no write ever put a node to plain eco
while it ran a performance pod. Then the cache must converge (every record equal to
what a fresh list gives) and the cluster too.

``JOULIE_CHAOS_API_DOWN`` (a Go duration, default ``5s``) sets how long the API stays
down; ``scripts/reliability.sh`` can run it with ``1m``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from joulie_tasks import config, ports
from joulie_tasks.adapters import cache_store, clients, store
from joulie_tasks.core import cache, durations
from joulie_tasks.ports import metrics
from joulie_testbed.emulator import Emulator
from joulie_testbed.emulator import seed as seeding
from joulie_testbed.procs import Proc, Stack, wait_for
from joulie_testbed.ticks import TickClient
from tests.chaos.scenario import Chaos

PROFILE = "joulie.io/power-profile"
DRAINING = "joulie.io/draining"
TARGET = "node-00003"
FALLBACK_REASONS = ("absent", "not_synced", "stale", "unreadable")
API_DOWN_S = durations.parse_duration(os.environ.get("JOULIE_CHAOS_API_DOWN", "5s"))


def _pod(name: str, node: str) -> dict[str, Any]:
    """A performance-only pod running on ``node``."""
    return seeding.make_pod(
        name, namespace="work", shape="selector-performance", node=node, phase="Running"
    )


def _labels(emulator: Emulator, node: str) -> dict[str, str]:
    return dict(emulator.get_node(node)["metadata"].get("labels") or {})


def _expected_cache(emulator: Emulator, env: dict[str, str]) -> dict[str, dict[str, str]]:
    settings = config.read_settings(env)
    keys = cache.interest_keys(
        settings.selector,
        reserved_label_key=settings.reserved_label_key,
        profile_label=settings.power_profile_label,
        draining_label=settings.draining_label,
    )
    pods = {cache.pod_key(p): cache.pod_contribution(p) for p in emulator.list_objects("pods")}
    nodes = {}
    for obj in emulator.list_objects("nodes"):
        record = cache.node_record(obj, keys)
        if record is not None:
            nodes[record.name] = record.model_dump_json()
    npps = {}
    for obj in emulator.list_objects("nodepowerprofiles"):
        npp = cache.npp_record(obj)
        if npp is not None:
            npps[npp.name] = npp.model_dump_json()
    return {
        cache_store.PODS: {k: v for k, v in pods.items() if v},
        cache_store.NODES: nodes,
        cache_store.NPPS: npps,
    }


def _cache_contents(state: store.RedisStore) -> dict[str, dict[str, str]]:
    return {
        key: {k.decode(): v.decode() for k, v in state.client.hgetall(key).items()}
        for key in (cache_store.PODS, cache_store.NODES, cache_store.NPPS)
    }


def _group_frozen(pid: int) -> bool:
    """Every process of the group led by ``pid`` is stopped (SIGSTOP delivered)."""
    states = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process went away meanwhile
        if int(fields[2]) == pid:  # fields: state, ppid, pgrp, …
            states.append(fields[0])
    return bool(states) and all(s in ("T", "t") for s in states)


def _fresh(state: store.RedisStore) -> bool:
    status = clients.cache(state).status()
    age = status.age(time.time())
    return all(status.synced.values()) and age is not None and age < 2.0


def _wait_older_than_max_age(state: store.RedisStore) -> None:
    wait_for(
        lambda: (clients.cache(state).status().age(time.time()) or 0) > 3.0,
        timeout=15,
        what="the cache older than CACHE_MAX_AGE (3 s)",
    )


class Scene:
    """Four managed nodes (static 50 %: 0-1 performance, 2-3 eco), a worker, a watcher,
    and node-00003 draining for pod A."""

    def __init__(self, chaos: Chaos, *, cache_max_age: str = "3s", lease_ttl: str = "3s") -> None:
        self.chaos = chaos
        stack, emulator, state = chaos.stack, chaos.emulator, chaos.state
        self.stack, self.emulator, self.state = stack, emulator, state
        emulator.seed(4, 0, seed=11)
        emulator.set_bookmark_interval(0.2)
        stack.configure(
            static_hp_frac="0.5",
            kick_window="1h",  # ticks are driven one by one (the kick path has its own tests)
            cache_max_age=cache_max_age,
            watch_lease_ttl=lease_ttl,
            kube_request_timeout="2s",
        )
        self.worker = stack.start_worker("w1")
        self.watchers = [stack.start_proc("watch-1", ["watch"], ready="started")]
        wait_for(lambda: _fresh(state), timeout=30, what="a synced cache")
        emulator.put_object(_pod("a", TARGET))
        self.drive = chaos.driver()
        self.drive.converge(max_ticks=3)
        assert _labels(emulator, TARGET).get(DRAINING) == "true"
        self.drive.outcomes.clear()

    def swap(self) -> None:
        """A finishes, B is bound to the same node."""
        self.emulator.delete_object("pods", "a", "work")
        self.emulator.put_object(_pod("b", TARGET))

    def settle(self, *, draining: bool = True) -> tuple[int, list[str]]:
        """Converge, check the invariant and the cache; return ticks used and problems.
        ``draining``: whether node-00003 must end draining (B bound there) or not."""
        n = self.drive.converge(max_ticks=8)
        assert (_labels(self.emulator, TARGET).get(DRAINING) == "true") is draining
        wait_for(lambda: _fresh(self.state), timeout=30, what="the cache fresh again")
        wait_for(
            lambda: _cache_contents(self.state) == _expected_cache(self.emulator, self.stack.env),
            timeout=30,
            what="the cache to converge",
        )
        found = self.chaos.problems()
        unsafe = self.emulator.write_log.unsafe(PROFILE, DRAINING)
        found += [f"eco write under a performance pod: {r.node} at {r.time}" for r in unsafe]
        return n, found

    def counter(self, name: str, **labels: str) -> float:
        return self.chaos.ticks.counter(name, **labels)

    def total(self, name: str) -> float:
        """A counter summed over all its label values."""
        counters, _ = self.state.metric_values()
        prefix = metrics.field(name).removesuffix("{}")  # the name and the separator
        return sum(v for k, v in counters.items() if k.startswith(prefix))

    def watch_requests(self) -> dict[str, int]:
        """Watch requests the API server served, per resource."""
        served = self.emulator.counters()
        return {r: served.get(("watch", r), 0) for r in ports.cache.RESOURCES}

    def heartbeats(self, n: int) -> None:
        """Wait until the watcher stamped the cache ``n`` times from now on (its buffered
        counters are flushed right after each stamp)."""
        cs = clients.cache(self.state)
        for _ in range(n):
            last = cs.status().heartbeat or 0.0
            wait_for(
                lambda last=last: (cs.status().heartbeat or 0.0) > last,
                timeout=30,
                what="a watcher heartbeat",
            )

    def relists(self, reason: str) -> float:
        counters, _ = self.state.metric_values()
        return sum(
            v
            for k, v in counters.items()
            if k.startswith(metrics.WATCH_RELISTS) and f'"reason":"{reason}"' in k
        )

    def fill(self, found: list[str], *, fault: str, action: str, behaviour: str) -> None:
        self.chaos.row.fill(self.drive, found, fault=fault, action=action, behaviour=behaviour)


def test_watch_dropped_mid_stream(chaos: Chaos, emulator: Emulator) -> None:
    scene = Scene(chaos)
    wait_for(lambda: scene.total(metrics.WATCH_RELISTS) >= 3, timeout=15, what="start relists")
    scene.heartbeats(2)  # every relist so far is counted
    relists_before = scene.total(metrics.WATCH_RELISTS)
    broken_before = {
        r: scene.counter(metrics.WATCH_ERRORS, resource=r) for r in ports.cache.RESOURCES
    }
    opened_before = scene.watch_requests()
    emulator.delete_object("pods", "a", "work")
    emulator.close_watches(abrupt=True)  # every stream cut without a final chunk
    emulator.put_object(_pod("b", TARGET))
    wait_for(
        lambda: all(n > opened_before[r] for r, n in scene.watch_requests().items()),
        timeout=20,
        what="every watch reopened after the cut",
    )
    reopened = scene.watch_requests()
    wait_for(
        lambda: all(
            scene.counter(metrics.WATCH_ERRORS, resource=r) > broken_before[r]
            for r in ports.cache.RESOURCES
        ),
        timeout=20,
        what="the watcher to count every stream broken",
    )
    n, found = scene.settle()
    scene.heartbeats(2)  # a relist after the cut would be counted by now
    relisted = scene.total(metrics.WATCH_RELISTS) - relists_before
    scene.fill(
        found,
        fault="watch connection dropped mid-stream",
        action="every watch stream cut (socket shut) between pod A finishing and B being bound",
        behaviour=(
            "each stream broke (counted as a watch error) and was reopened "
            f"({sum(reopened.values()) - sum(opened_before.values())} new watch requests) "
            f"from its last resourceVersion: {relisted:.0f} relists; the replayed events "
            "kept the node draining under B"
        ),
    )
    assert relisted == 0  # any reason: start, expired, error_*, requested, periodic
    assert found == []
    assert n <= 2


def test_410_gone(chaos: Chaos, emulator: Emulator) -> None:
    scene = Scene(chaos)
    scene.swap()
    emulator.compact()  # the versions the watches would resume from are gone
    emulator.close_watches()
    wait_for(lambda: scene.relists("expired") >= 1, timeout=20, what="a relist after 410")
    n, found = scene.settle()
    scene.fill(
        found,
        fault="410 Gone on resume",
        action="history compacted past the watcher's resourceVersion, then every stream closed",
        behaviour=(
            f"resumed watches got ERROR 410 Expired: relisted ({int(scene.relists('expired'))} "
            "relists, reason expired), cache replaced atomically, node kept draining"
        ),
    )
    assert found == []
    assert n <= 2


def test_api_down_then_back(
    chaos: Chaos, emulator: Emulator, ticks: TickClient, state: store.RedisStore
) -> None:
    scene = Scene(chaos)
    port = emulator.port
    emulator.stop()
    down_at = time.monotonic()
    scene.swap()  # changes the watcher cannot see
    _wait_older_than_max_age(state)
    outcome = scene.drive.one()  # a tick while the API is down
    remaining = API_DOWN_S - (time.monotonic() - down_at)
    if remaining > 0:
        time.sleep(remaining)  # the fault's duration itself, not a wait for an event
    emulator.start(port=port)
    _n, found = scene.settle()
    scene.fill(
        found,
        fault="API down, then back",
        action=(
            f"API server stopped for {API_DOWN_S:.0f} s (JOULIE_CHAOS_API_DOWN) while pod A "
            "finished and B was bound"
        ),
        behaviour=(
            "watch streams broke; the watcher stopped its heartbeat and retried with backoff; "
            f"ticks found the cache stale and listed (tick while down: {outcome}); after the "
            "API came back the watches resumed and the cache converged"
        ),
    )
    assert outcome == "failed"
    assert scene.counter("joulie_cache_fallbacks_total", reason="stale") >= 1
    assert found == []


def test_active_watcher_sigkilled(
    chaos: Chaos, stack: Stack, ticks: TickClient, state: store.RedisStore
) -> None:
    scene = Scene(chaos)
    standby = stack.start_proc("watch-2", ["watch"], ready="started")
    standby.wait_for_log("standby", timeout=15)
    first: Proc = scene.watchers[0]
    first.kill(signal.SIGKILL)
    killed = time.monotonic()
    scene.swap()
    cs = clients.cache(state)
    wait_for(
        lambda: str(standby.proc.pid) in (cs.status().lease or ""),
        timeout=10,
        what="the standby to take the lease",
    )
    took = time.monotonic() - killed
    _n, found = scene.settle()
    scene.fill(
        found,
        fault="active watcher SIGKILLed",
        action="two watchers; the lease holder SIGKILLed, then pod A finished and B was bound",
        behaviour=(
            f"the standby took the lease {took:.1f} s later (WATCH_LEASE_TTL 3 s) with a new "
            "token, relisted everything before its heartbeat made the cache fresh again; "
            "ticks in between listed (cache stale); one lease, one kicker at any time"
        ),
    )
    assert took <= 3.0 + 1.5
    assert scene.relists("start") >= 6  # three resources, once per holder
    assert found == []


def test_redis_flushed_under_the_watcher(chaos: Chaos, state: store.RedisStore) -> None:
    scene = Scene(chaos)
    cs = clients.cache(state)
    lease_before = cs.status().lease
    assert lease_before is not None
    flushed_at = time.time()
    state.client.flushall()
    scene.swap()
    outcome = scene.drive.one()

    def relisted_under_a_new_lease() -> ports.cache.CacheStatus | None:
        status = cs.status()
        # The flush wiped meta: synced flags and last_relist come from relists after it.
        ok = (
            status.lease is not None
            and all(status.synced.values())
            and (status.last_relist or 0.0) >= flushed_at
        )
        return status if ok else None

    wait_for(relisted_under_a_new_lease, timeout=30, what="a new lease and a relist")
    # Counters were flushed too: whatever is counted now happened after the flush.
    wait_for(lambda: scene.relists("start") >= 3, timeout=15, what="the relists counted")
    acquired = scene.counter(metrics.LEASE_CHANGES)
    log = scene.watchers[0].log()
    sessions = log.count("watcher: active, lease")
    ended = [line.split("session ended: ", 1)[1] for line in log.splitlines() if "ended: " in line]
    # How the tick right after the flush got its snapshot depends on how far the
    # watcher had got: no cache yet, relisted but not stamped, or already fresh again.
    fell_back = [r for r in FALLBACK_REASONS if scene.counter(metrics.CACHE_FALLBACKS, reason=r)]
    _n, found = scene.settle()
    how = f"listed (cache {'/'.join(fell_back)})" if fell_back else "read the relisted cache"
    scene.fill(
        found,
        fault="Redis flushed under the watcher",
        action="FLUSHALL (cache, lease, FSM gone), then pod A finished and B was bound",
        behaviour=(
            f"the next tick {how} and {outcome}; the watcher's session ended "
            f"({ended[0] if ended else '?'}), it took the lease again and relisted "
            "everything"
        ),
    )
    assert outcome == "completed"
    assert acquired >= 1  # counted after the flush wiped the counters
    assert sessions >= 2  # the session holding the flushed lease ended; a new one began
    assert ended
    # The flush reset the lease's token counter too; the lease value's nonce still
    # makes the new lease differ from the flushed one, so no old write could pass.
    after = cs.status().lease
    assert after is not None
    assert after != lease_before
    assert found == []


def test_redis_back_without_the_last_cache_writes(chaos: Chaos, state: store.RedisStore) -> None:
    # Given a synced cache whose lease outlives a Redis restart, and a snapshot of Redis
    scene = Scene(chaos, lease_ttl="60s")
    cs = clients.cache(state)
    lease_before = cs.status().lease
    assert lease_before is not None
    # (the snapshot holds the lease with more than 30 s to live: Redis is back long before)
    assert state.client.pttl(cache_store.LEASE) > 30_000
    state.client.save()
    snapshot = scene.stack.redis.dir / "dump.rdb"
    before_swap = snapshot.read_bytes()
    # When the watcher writes A's end and B's binding into the cache, and Redis comes
    # back from the snapshot without them (as a failover to a replica that had not yet
    # received them), with the watcher's lease still in it
    scene.swap()
    wait_for(
        lambda: _cache_contents(state) == _expected_cache(scene.emulator, scene.stack.env),
        timeout=30,
        what="the swap in the cache",
    )
    scene.stack.redis.stop()
    snapshot.write_bytes(before_swap)
    restarted_at = time.time()
    scene.stack.redis.start()

    # Then the watcher notices another server, gives the lease up and relists under a
    # new one, and the cache and the cluster converge
    def relisted_under_a_new_lease() -> bool:
        status = cs.status()
        return (
            status.lease not in (None, lease_before)
            and all(status.synced.values())
            and (status.last_relist or 0.0) >= restarted_at
        )

    wait_for(relisted_under_a_new_lease, timeout=30, what="a new lease and a relist")
    ended = [
        line.split("session ended: ", 1)[1]
        for line in scene.watchers[0].log().splitlines()
        if "session ended: " in line
    ]
    n, found = scene.settle()
    scene.fill(
        found,
        fault="Redis back without the watcher's last cache writes, its lease kept",
        action=(
            "SAVE; pod A finished and B was bound (both in the cache); redis-server "
            "restarted from the snapshot taken before, the watcher's lease (TTL 60 s) in it"
        ),
        behaviour=(
            f"the watcher's session ended ({ended[0] if ended else '?'}), it took a new "
            f"lease and relisted everything; the cache and the cluster converged ({n} tick(s))"
        ),
    )
    assert ended
    assert "another server" in ended[0]
    assert found == []


def test_events_missed_on_purpose(
    chaos: Chaos, emulator: Emulator, state: store.RedisStore
) -> None:
    scene = Scene(chaos)
    stale_before = scene.counter(metrics.CACHE_FALLBACKS, reason="stale")
    watcher_proc = scene.watchers[0]
    watcher_proc.signal_group(signal.SIGSTOP)
    try:
        wait_for(lambda: _group_frozen(watcher_proc.proc.pid), timeout=10, what="watcher frozen")
        # A finishes unseen: the frozen cache still counts it on the node, so a tick
        # trusting that cache would keep the node draining for nothing.
        emulator.delete_object("pods", "a", "work")
        assert state.client.hget(cache_store.PERF, TARGET) is not None
        _wait_older_than_max_age(state)
        outcome = scene.drive.one()
        stale = scene.counter(metrics.CACHE_FALLBACKS, reason="stale") - stale_before
        during = _labels(emulator, TARGET)
    finally:
        watcher_proc.signal_group(signal.SIGCONT)
    _n, found = scene.settle(draining=False)
    scene.fill(
        found,
        fault="events missed on purpose",
        action="watcher frozen (SIGSTOP) while pod A finished, then resumed",
        behaviour=(
            f"the tick meanwhile found the cache stale (still showing A) and listed "
            f"({outcome}, {stale:.0f} stale fallback): the drain completed "
            f"(node {during.get(PROFILE)}); the resumed watcher caught up"
        ),
    )
    assert outcome == "completed"
    assert stale >= 1
    assert during.get(PROFILE) == "eco"
    assert during.get(DRAINING) != "true"
    assert found == []


def test_fresh_cache_missed_a_bind(
    chaos: Chaos, emulator: Emulator, state: store.RedisStore
) -> None:
    scene = Scene(chaos, cache_max_age="60s")
    watcher_proc = scene.watchers[0]
    emulator.delete_object("pods", "a", "work")
    wait_for(
        lambda: (
            state.client.hget(cache_store.PODS, "work/a") is None
            and state.client.hget(cache_store.PERF, TARGET) is None
        ),
        timeout=20,
        what="the cache to see A finish",
    )
    before = _labels(emulator, TARGET)  # DrainingPerformance: eco, draining true
    stopped_before = scene.counter(metrics.DOWNGRADES_STOPPED)
    fallbacks_before = scene.total(metrics.CACHE_FALLBACKS)
    watcher_proc.signal_group(signal.SIGSTOP)
    try:
        wait_for(lambda: _group_frozen(watcher_proc.proc.pid), timeout=10, what="watcher frozen")
        emulator.put_object(_pod("b", TARGET))  # bound while the watcher cannot see it
        status = clients.cache(state).status()
        age = status.age(time.time())
        # Fresh (CACHE_MAX_AGE 60 s) and wrong: no performance pod on the node.
        assert all(status.synced.values())
        assert age is not None
        assert age < 30
        assert state.client.hget(cache_store.PERF, TARGET) is None
        outcome = scene.drive.one()
        stopped = scene.counter(metrics.DOWNGRADES_STOPPED) - stopped_before
        fallbacks = scene.total(metrics.CACHE_FALLBACKS) - fallbacks_before
        during = _labels(emulator, TARGET)
        unsafe = emulator.write_log.unsafe(PROFILE, DRAINING)
        asked = bool(state.client.hexists(cache_store.META, "relist_requested"))
    finally:
        watcher_proc.signal_group(signal.SIGCONT)
    _n, found = scene.settle()
    scene.fill(
        found,
        fault="cache fresh but wrong (bind missed)",
        action=(
            "watcher frozen (SIGSTOP) after it saw pod A finish, before B was bound; "
            "CACHE_MAX_AGE 60 s keeps its cache fresh"
        ),
        behaviour=(
            f"the tick trusted the cache ({fallbacks:.0f} fallbacks, {outcome}) and planned "
            "the node to eco; the write stage's fresh pod count found B and stopped the "
            f"downgrade ({stopped:.0f} stopped): the node kept draining; "
            "the watcher was asked to relist"
        ),
    )
    assert fallbacks == 0  # the tick was cache-fed: only the confirmation could save it
    assert stopped >= 1
    assert during.get(DRAINING) == "true"
    assert during == before  # not written at all this tick
    assert asked  # the tick asked the watcher to relist
    assert unsafe == []
    assert found == []
