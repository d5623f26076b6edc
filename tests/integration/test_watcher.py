"""The watcher with real processes: ``joulie-tasks watch`` + workers on a real Redis,
against the API emulator's watches.

Covers: a cache-fed tick makes no list request and converges like a list-fed one;
a burst of performance pods reaches the nodes with no tick sent by anyone (the
watcher's kick); a wrong cache cannot downgrade a node under a performance pod
(the write stage's confirmation, checked in the emulator's request log); a stale
cache falls back to lists; two watchers: one active, the standby takes over when
the active one is SIGKILLed; ``status`` shows the watcher; quiet ticks end where a
schedule window opens.
"""

from __future__ import annotations

import json
import math
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from joulie_tasks.adapters import cache_store, clients, store
from joulie_tasks.ports import metrics
from joulie_testbed.chaos import pending_writes, wait_for_event_about, wait_for_node_events
from joulie_testbed.emulator import Emulator
from joulie_testbed.emulator import seed as seeding
from joulie_testbed.procs import Proc, Stack, wait_for
from joulie_testbed.ticks import TickClient

pytestmark = pytest.mark.slow

PROFILE = "joulie.io/power-profile"
DRAINING = "joulie.io/draining"


def start_watcher(stack: Stack, name: str = "watch") -> Proc:
    return stack.start_proc(name, ["watch"], ready="started")


def driven_with_a_watcher(stack: Stack, state: store.RedisStore) -> None:
    """A worker and a synced watcher, no kicks: the test drives every tick itself."""
    stack.configure(kick_window="1h")
    stack.start_worker()
    start_watcher(stack)
    wait_for(lambda: synced(state), timeout=30, what="a synced, fresh cache")


def synced(state: store.RedisStore) -> bool:
    status = clients.cache(state).status()
    age = status.age(time.time())
    return all(status.synced.values()) and age is not None and age < 2.0


def perf_pod(name: str, node: str | None = None) -> dict[str, Any]:
    """A performance-only pod, Running on ``node`` or Pending without one."""
    phase = "Running" if node else "Pending"
    return seeding.make_pod(
        name, namespace="default", shape="selector-performance", node=node, phase=phase
    )


def labels(emulator: Emulator, node: str) -> dict[str, str]:
    return dict(emulator.get_node(node)["metadata"].get("labels") or {})


def list_requests(emulator: Emulator) -> int:
    return sum(n for (verb, _), n in emulator.counters().items() if verb == "list")


def test_a_cache_fed_tick_lists_nothing_and_converges(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore
) -> None:
    emulator.seed(12, 4, seed=7)
    driven_with_a_watcher(stack, state)
    emulator.reset_counters()
    first = ticks.run()
    # Nodes and profiles come from the cache; the only lists are the confirmations,
    # one `list pods` by spec.nodeName per node written towards eco
    counters, _ = state.metric_values()
    confirmations = counters.get(metric(metrics.CONFIRMATIONS), 0)
    assert confirmations >= 1
    requests = emulator.counters()
    assert ("list", "nodes") not in requests
    assert ("list", "nodepowerprofiles") not in requests
    assert requests.get(("list", "pods")) == confirmations
    assert pending_writes(emulator, stack.env).empty
    assert not any(k.startswith(metrics.CACHE_FALLBACKS) for k in counters)
    # (the first tick's Node events go out from their own task: let them land first)
    events_before = wait_for_node_events(emulator, state, first["tick_id"])
    # The second tick, on the converged cluster joined by two nodes that keep the
    # partition as it was (one sorts first: performance; one sorts last: eco, under a
    # performance pod, so the tick starts one deferral — one Node event, the tick's
    # last, known to come): it writes the new nodes only, lists nothing, and does not
    # announce the first tick's deferrals again
    emulator.put_object(seeding.make_node("a-late", labels={"joulie.io/managed": "true"}))
    emulator.put_object(seeding.make_node("zz-late", labels={"joulie.io/managed": "true"}))
    emulator.put_object(perf_pod("perf-late", "zz-late"))

    def cached() -> bool:
        view = clients.cache(state).read(tick_time=time.time(), now=time.time(), max_age=2.0)
        if isinstance(view, str):
            return False
        names = {n.name for n in view.snapshot.nodes}
        by_node = view.demand.performance_pods_by_node
        return {"a-late", "zz-late"} <= names and by_node.get("zz-late") == 1

    wait_for(cached, timeout=30, what="the new nodes and pod in the cache")
    emulator.reset_counters()
    done = ticks.run()
    wait_for_event_about(emulator, "zz-late")
    assert done["failures"] == {}
    assert done["written"] == 4  # labels and a profile for each new node
    requests = {k: n for k, n in emulator.counters().items() if k[0] != "watch"}
    assert requests == {
        ("patch", "nodes"): 2,
        ("create", "nodepowerprofiles"): 2,
        ("create", "events"): 1,
    }
    assert len(emulator.list_objects("events", "default")) == events_before + 1
    assert labels(emulator, "a-late")[PROFILE] == "performance"
    assert labels(emulator, "zz-late")[DRAINING] == "true"
    assert pending_writes(emulator, stack.env).empty


def test_a_tick_with_nothing_changed_runs_quiet_until_the_cache_changes(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore
) -> None:
    emulator.seed(12, 0, seed=7)
    driven_with_a_watcher(stack, state)
    ticks.run()  # labels every node
    eco = next(
        n["metadata"]["name"]
        for n in emulator.list_objects("nodes")
        if labels(emulator, n["metadata"]["name"]).get(PROFILE) == "eco"
    )
    emulator.put_object(perf_pod("perf-q", eco))  # the eco node drains (D18)
    # Given a converged cluster: a full tick that wrote nothing, then a quiet one
    summaries = ticks.run_until_quiet()
    full = summaries[-2]
    assert not full["quiet"]
    assert full["written"] == 0
    assert full["deferred"] == 1
    assert labels(emulator, eco)[DRAINING] == "true"
    deferred = metric(
        metrics.STATE_TRANSITIONS,
        from_state="ActivePerformance",
        node=eco,
        result="deferred",
        to_state="ActiveEco",
    )
    before = state.metric_values().counters[deferred]
    # When nothing changes
    emulator.reset_counters()
    quiet = ticks.run()
    # Then the tick is quiet: no API request, the same nodes, and the draining node's
    # deferral counted as a full tick counts it (D18; streamed once, when it started)
    assert quiet["quiet"]
    assert {k: n for k, n in emulator.counters().items() if k[0] != "watch"} == {}
    assert (quiet["nodes"], quiet["deferred"], quiet["written"]) == (full["nodes"], 1, 0)
    counters = state.metric_values().counters
    assert counters[deferred] == before + 1
    assert counters[metric(metrics.QUIET_TICKS)] >= 2
    streamed = [(e.node, e.result.value) for e in state.transitions() if e.node == eco]
    assert streamed.count((eco, "deferred")) == 1
    assert not [e for e in state.transitions() if e.tick_id == quiet["tick_id"]]
    # When the pod goes: the cache changes, and the next tick is a full one that acts
    assert emulator.delete_object("pods", "perf-q", "default")

    def pod_gone() -> bool:
        view = clients.cache(state).read(tick_time=time.time(), now=time.time(), max_age=2.0)
        return not isinstance(view, str) and eco not in view.demand.performance_pods_by_node

    wait_for(pod_gone, timeout=30, what="the pod's deletion in the cache")
    acted = ticks.run()
    assert not acted["quiet"]
    assert acted["written"] >= 1
    assert labels(emulator, eco).get(DRAINING) != "true"
    # When the watcher relists, with nothing changed: the next tick is a full one
    ticks.run_until_quiet()
    last_relist = clients.cache(state).status().last_relist
    clients.cache(state).request_relist()
    wait_for(
        lambda: clients.cache(state).status().last_relist != last_relist,
        timeout=30,
        what="the watcher's relist",
    )
    relisted = ticks.run()
    assert not relisted["quiet"]
    assert relisted["written"] == 0


def test_quiet_ticks_end_where_a_schedule_window_opens(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore, tmp_path: Path
) -> None:
    # Given a window opening at a whole minute 4-5 minutes from now that plans every node
    # performance, and a converged cluster before it
    opens = math.floor(time.time() / 60) * 60 + 300
    start = datetime.fromtimestamp(opens, tz=UTC)
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text(
        "windows:\n  - name: surge\n"
        f"    cron: '{start.minute} {start.hour} * * *'\n    duration: 1h\n"
        "    policy:\n      static_hp_frac: 1.0\n"
    )
    emulator.seed(12, 0, seed=7)
    stack.configure(schedule_file=str(schedule))
    driven_with_a_watcher(stack, state)
    ticks.run_until_quiet()
    names = [n["metadata"]["name"] for n in emulator.list_objects("nodes")]
    assert "eco" in {labels(emulator, n).get(PROFILE) for n in names}

    def tick_at(at: float) -> dict[str, Any]:
        ticks.send(scheduled_at=at)
        return wait_for(lambda: ticks.finished(at), timeout=60, what=f"the tick at {at}")

    # When nothing changes until just before the opening: the tick there is still quiet
    before = tick_at(opens - 1)
    assert before["quiet"]
    assert before["written"] == 0
    # When the window opens: the tick at its edge is a full one and applies its policy
    opened = tick_at(opens)
    assert not opened["quiet"]
    assert opened["written"] >= 1
    assert {labels(emulator, n).get(PROFILE) for n in names} == {"performance"}


def test_a_burst_of_performance_pods_is_answered_without_any_tick_sent(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore
) -> None:
    emulator.seed(10, 0, seed=3)
    stack.configure(
        policy_type="queue_aware_v1",
        queue_hp_base_frac="0",
        queue_hp_min="0",
        queue_perf_per_hp_node="1",
    )
    stack.start_worker()
    ticks.run()  # converged with no demand: every node eco
    assert all(
        labels(emulator, n["metadata"]["name"]).get(PROFILE) == "eco"
        for n in emulator.list_objects("nodes")
        if labels(emulator, n["metadata"]["name"]).get("joulie.io/managed") == "true"
    )
    start_watcher(stack)
    wait_for(lambda: synced(state), timeout=30, what="a synced, fresh cache")

    started = time.monotonic()
    for i in range(3):
        emulator.put_object(perf_pod(f"burst-{i}"))

    def performance_nodes() -> int:
        return sum(
            labels(emulator, n["metadata"]["name"]).get(PROFILE) == "performance"
            for n in emulator.list_objects("nodes")
        )

    wait_for(lambda: performance_nodes() == 3, timeout=30, what="3 performance nodes")
    took = time.monotonic() - started
    counters, _ = state.metric_values()
    sent = sum(v for k, v in counters.items() if k.startswith("joulie_kicks_total") and "sent" in k)
    assert sent >= 1
    assert counters.get(metric(metrics.REACTION_LATENCY + "_count"), 0) >= 1
    print(f"reaction: {took:.2f}s")


def test_a_wrong_cache_cannot_downgrade_a_node_under_a_performance_pod(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore
) -> None:
    emulator.seed(4, 0, seed=5)
    stack.configure(kick_window="1h", static_hp_frac="0.5")
    stack.start_worker()
    ticks.run()
    perf_nodes = sorted(
        n["metadata"]["name"]
        for n in emulator.list_objects("nodes")
        if labels(emulator, n["metadata"]["name"]).get(PROFILE) == "performance"
    )
    assert perf_nodes
    target = perf_nodes[0]
    emulator.put_object(perf_pod("pinned", target))
    start_watcher(stack)
    wait_for(lambda: synced(state), timeout=30, what="a synced, fresh cache")
    # Lower the share of performance nodes: the plan now downgrades `target`, which
    # still runs a performance pod. Make the cache forget the pod (as a missed event
    # would), so the cache-fed guard sees no performance pod there.
    redis = state.client
    assert redis.hdel(cache_store.PODS, "default/pinned") == 1
    redis.hdel(cache_store.PERF, target)
    redis.hincrby(cache_store.DEMAND, "performance", -1)
    stack.procs[0].stop()
    stack.configure(static_hp_frac="0")
    stack.start_worker("w2")
    emulator.write_log.clear()
    ticks.run()

    assert emulator.write_log.unsafe(PROFILE, DRAINING) == []
    assert labels(emulator, target).get(PROFILE) == "performance"
    counters, _ = state.metric_values()
    assert counters.get(metric(metrics.DOWNGRADES_STOPPED)) == 1.0
    assert counters.get(metric(metrics.CONFIRMATIONS), 0) >= 1
    # The watcher relists on request; the next ticks mark the node draining instead
    wait_for(lambda: state.client.hget(cache_store.PODS, "default/pinned"), timeout=20)
    ticks.run()
    assert labels(emulator, target).get(DRAINING) == "true"
    assert emulator.write_log.unsafe(PROFILE, DRAINING) == []


def metric(name: str, **labels_: str) -> str:

    return metrics.field(name, **labels_)


def test_a_stale_cache_falls_back_to_lists(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore
) -> None:
    emulator.seed(6, 2, seed=9)
    stack.configure(kick_window="1h", cache_max_age="2s")
    stack.start_worker()
    watcher = start_watcher(stack)
    wait_for(lambda: synced(state), timeout=30, what="a synced, fresh cache")
    watcher.signal_group(signal.SIGSTOP)
    try:
        wait_for(lambda: not synced(state), timeout=10, what="the heartbeat to age")
        wait_for(
            lambda: clients.cache(state).status().age(time.time()) > 2.0,
            timeout=10,
            what="the cache to be older than CACHE_MAX_AGE",
        )
        emulator.reset_counters()
        ticks.run()
    finally:
        watcher.signal_group(signal.SIGCONT)
    assert list_requests(emulator) >= 3
    counters, _ = state.metric_values()
    assert counters.get(metric(metrics.CACHE_FALLBACKS, reason="stale")) == 1.0


def test_the_standby_takes_over_when_the_active_watcher_is_killed(
    stack: Stack, emulator: Emulator, state: store.RedisStore
) -> None:
    emulator.seed(4, 1, seed=2)
    stack.configure(watch_lease_ttl="2s", kick_window="1h")
    first = start_watcher(stack, "watch-1")
    wait_for(lambda: synced(state), timeout=30, what="a synced cache")
    second = start_watcher(stack, "watch-2")
    active = clients.cache(state).status().lease
    assert active is not None
    assert str(first.proc.pid) in active
    second.wait_for_log("standby", timeout=10)
    first.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(
        lambda: str(second.proc.pid) in (clients.cache(state).status().lease or ""),
        timeout=10,
        what="the standby to take the lease",
    )
    assert time.monotonic() - killed_at <= 2.0 + 1.5  # one TTL (+ a poll and slack)
    wait_for(lambda: synced(state), timeout=30, what="the cache synced by the new holder")
    # The new holder relisted: a pod created now is in the cache
    emulator.put_object(perf_pod("late", "node-00001"))
    wait_for(lambda: state.client.hget(cache_store.PODS, "default/late"), timeout=10)

    out = stack.run_cli("status", "--output", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert str(second.proc.pid) in data["watcher"]["lease"]
    assert data["watcher"]["synced"] is True
    assert data["watcher"]["cache_age_s"] < 5


@pytest.mark.envtest
@pytest.mark.parametrize("cluster", ["real"], indirect=True)
def test_the_watcher_on_the_real_kube_apiserver(
    cluster: Any,
    request: pytest.FixtureRequest,
    redis_server: Any,
    state: store.RedisStore,
    ticks: TickClient,
    tmp_path: Any,
) -> None:
    """List-then-watch, bookmarks and resume against a real kube-apiserver: a cache-fed
    tick lists nothing there, and a performance pod bound to an eco node is answered by
    the watcher's kick (no tick sent by the test)."""
    plane = request.getfixturevalue("real_server")
    # Direct to the server: the test proxy buffers whole responses, a watch never ends
    kubeconfig = plane.write_kubeconfig(tmp_path / "direct-kubeconfig")
    stack = Stack(tmp=tmp_path, redis_server=redis_server, kubeconfig=kubeconfig)
    try:
        cluster.seed(4, 0, seed=13)
        stack.configure(kick_window="300ms", static_hp_frac="0.5")
        stack.start_worker()
        ticks.run()
        eco = sorted(
            n["metadata"]["name"]
            for n in cluster.list("nodes")
            if cluster.labels(n["metadata"]["name"]).get(PROFILE) == "eco"
        )
        assert eco
        start_watcher(stack)
        wait_for(lambda: synced(state), timeout=60, what="a synced cache on the real server")

        before = plane.request_totals()
        ticks.run()
        after = plane.request_totals()
        lists = {
            key: after[key] - before.get(key, 0.0)
            for key in after
            if key[0] == "LIST" and after[key] != before.get(key, 0.0)
        }
        assert not any(res in ("nodes", "nodepowerprofiles") for _, res, _ in lists), lists

        cluster.create(perf_pod("pinned", eco[0]))
        wait_for(
            lambda: cluster.labels(eco[0]).get(DRAINING) == "true",
            timeout=30,
            what="the kicked tick to mark the node draining",
        )
        counters, _ = state.metric_values()
        assert any(k.startswith("joulie_kicks_total") and "sent" in k for k in counters)
    finally:
        stack.stop()
