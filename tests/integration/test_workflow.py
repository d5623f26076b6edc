"""The reconcile workflow with real processes: Celery workers and beat on a real Redis,
the official Kubernetes client over HTTP to the API emulator.

Covers: convergence and a write-free second tick; pod-mix changes; a deferred
downgrade completing; 409 and 500 storms; a worker SIGKILLed mid-batch; two beats;
a dead lock holder; a stale-tick backlog; ``reconcile --once --dry-run``.
The oracle for "converged" is the pure core run on the emulator's objects: the
distributed workflow must reach exactly what the (unit-tested) core decides.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import time
from typing import Any

import pytest

from joulie_tasks.adapters import store
from joulie_tasks.ports import metrics
from joulie_testbed.chaos import (
    cluster_state,
    pending_writes,
    wait_for_event_about,
    wait_for_node_events,
)
from joulie_testbed.emulator import Emulator
from joulie_testbed.emulator import seed as seeding
from joulie_testbed.procs import Stack, wait_for
from joulie_testbed.ticks import TickClient
from tests.integration.cluster import ClusterBed

pytestmark = pytest.mark.slow

WRITE_VERBS = ("patch", "create", "update", "delete")


def writes_made(emulator: Emulator | ClusterBed) -> int:
    return sum(n for (verb, _), n in emulator.counters().items() if verb in WRITE_VERBS)


def assert_fsm_matches_cluster(state: store.RedisStore, emulator: Emulator | ClusterBed) -> None:
    """No false state: every FSM record says what the node's labels say."""
    records = state.fsm()
    assert records, "the FSM is empty"
    for node, record in records.items():
        assert record.state == cluster_state(emulator, node), (node, record)


def versions(emulator: Emulator | ClusterBed, resource: str) -> dict[str, str]:
    objs = emulator.list_objects(resource)
    return {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in objs}


def profile_label(emulator: Emulator | ClusterBed, node: str) -> str | None:
    return emulator.get_node(node)["metadata"].get("labels", {}).get("joulie.io/power-profile")


def perf_pod(name: str, node: str | None, phase: str = "Running") -> dict[str, Any]:
    return seeding.make_pod(
        name, namespace="default", shape="selector-performance", node=node, phase=phase
    )


def test_fifty_node_cluster_converges_and_the_next_tick_writes_only_the_new_nodes(
    cluster_stack: Stack, cluster: ClusterBed, ticks: TickClient, state: store.RedisStore
) -> None:
    # Given a 50-managed-node cluster (plus a reserved and an unschedulable node)
    cluster.seed(52, 8, seed=7, reserved=1, unschedulable=1)
    cluster_stack.start_worker("w1")
    cluster_stack.start_worker("w2")
    assert not pending_writes(cluster, cluster_stack.env).empty

    # When one tick runs
    first = ticks.run()

    # Then the cluster is exactly what the core decides, and the FSM agrees with it
    assert first["failures"] == {}
    assert first["nodes"] == 50
    assert pending_writes(cluster, cluster_stack.env).empty
    assert_fsm_matches_cluster(state, cluster)
    assert len(cluster.list_objects("nodepowerprofiles")) == 50
    # (its Node events go out from their own task: every node started Unknown, so
    # there is one per newly deferred downgrade; let them land before counting)
    events_before = wait_for_node_events(cluster, state, first["tick_id"])
    # (the server can hold an event a moment before the proxy has logged its answer)
    wait_for(cluster.proxy.idle, what="the proxy to log the last event")

    # When the next tick runs on the converged cluster, now joined by two new nodes
    # that keep the partition as it was (one sorts first and goes performance, one
    # sorts last and goes eco) — the last one running a performance pod, so the tick
    # starts one deferral: one Node event, the tick's last, known to come
    cluster.create_node("a-late", labels={"joulie.io/managed": "true"})
    cluster.create_node("zz-late", labels={"joulie.io/managed": "true"})
    cluster.put_object(perf_pod("perf-late", "zz-late"))
    cluster.reset_counters()
    second = ticks.run()
    wait_for_event_about(cluster, "zz-late")
    wait_for(cluster.proxy.idle, what="the proxy to log the last event")

    # Then it writes only the new nodes (labels and a profile each), announces only the
    # new deferral (none of the first tick's deferrals again), and reads with three
    # paginated lists
    assert second["failures"] == {}
    assert second["written"] == 4
    assert second["writes_planned"] == 4
    assert pending_writes(cluster, cluster_stack.env).empty
    assert profile_label(cluster, "a-late") == "performance"
    assert cluster_state(cluster, "zz-late") == "DrainingPerformance"
    counts = cluster.counters()
    pods = len(cluster.list_objects("pods"))
    assert dict(counts) == {
        ("list", "nodes"): 1,
        ("list", "pods"): math.ceil(pods / 500),
        ("list", "nodepowerprofiles"): 1,
        ("patch", "nodes"): 2,
        ("create", "nodepowerprofiles"): 2,
        ("create", "events"): 1,
    }
    patched = sorted(r.path for r in cluster.proxy.requests() if r.verb == "patch")
    assert patched == ["/api/v1/nodes/a-late", "/api/v1/nodes/zz-late"]
    profiles = {p["spec"]["nodeName"] for p in cluster.list_objects("nodepowerprofiles")}
    assert len(profiles) == 52
    assert {"a-late", "zz-late"} <= profiles
    assert len(cluster.list_objects("events", "default")) == events_before + 1
    print(f"converged 50-node tick: {sum(counts.values())} API requests {dict(counts)}")


def test_a_pod_mix_change_flips_the_right_nodes_and_a_downgrade_waits_for_its_pods(
    cluster_stack: Stack, cluster: ClusterBed, ticks: TickClient, state: store.RedisStore
) -> None:
    # Given queue_aware_v1 with no baseline: one performance node per performance pod
    cluster_stack.configure(
        policy_type="queue_aware_v1",
        queue_hp_base_frac="0",
        queue_hp_min="0",
        queue_perf_per_hp_node="1",
    )
    cluster.seed(6, 0, seed=1)
    nodes = sorted(n["metadata"]["name"] for n in cluster.list_objects("nodes"))
    cluster_stack.start_worker("w1")
    cluster_stack.start_worker("w2")
    ticks.run()
    assert [profile_label(cluster, n) for n in nodes] == ["eco"] * 6

    # When two performance pods arrive (one pending, one already on the last node)
    cluster.put_object(perf_pod("perf-a", None, phase="Pending"))
    cluster.put_object(perf_pod("perf-b", nodes[5]))
    ticks.run()

    # Then exactly the first two nodes flip to performance; the last node, planned eco,
    # keeps draining=true while its performance pod runs
    assert [profile_label(cluster, n) for n in nodes] == ["performance"] * 2 + ["eco"] * 4
    assert cluster_state(cluster, nodes[5]) == "DrainingPerformance"
    assert pending_writes(cluster, cluster_stack.env).empty

    # When demand drops to one pod, bound on node 1: the queue needs one performance
    # node, node 0 (first in byte order), so node 1 is planned eco
    cluster.delete_object("pods", "perf-a", "default")
    cluster.delete_object("pods", "perf-b", "default")
    cluster.put_object(perf_pod("perf-c", nodes[1]))
    third = ticks.run()

    # Then node 1 is planned eco but runs performance work: the downgrade is deferred;
    # node 5's pod is gone, so its downgrade completes
    assert cluster_state(cluster, nodes[0]) == "ActivePerformance"
    assert cluster_state(cluster, nodes[1]) == "DrainingPerformance"
    assert cluster_state(cluster, nodes[5]) == "ActiveEco"
    this_tick = [t for t in state.transitions() if t.tick_id == third["tick_id"]]
    assert [t.node for t in this_tick if t.result == "deferred"] == [nodes[1]]

    # When the pod finishes, the next tick completes the downgrade
    pod = cluster.get_object("pods", "perf-c", "default")
    assert pod is not None
    pod["status"] = {"phase": "Succeeded"}
    cluster.put_object(pod)
    ticks.run()
    assert cluster_state(cluster, nodes[1]) == "ActiveEco"
    applied = [
        (t.node, t.from_state, t.to_state) for t in state.transitions() if t.result == "applied"
    ]
    assert (nodes[1], "DrainingPerformance", "ActiveEco") in applied
    assert_fsm_matches_cluster(state, cluster)


def test_conflicts_on_node_patches_are_retried_and_counted(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore
) -> None:
    # (emulator only: a real server never answers a merge patch without a
    # resourceVersion with 409; the real 409 path is the profile test below)
    emulator.seed(8, 2, seed=3)
    stack.start_worker("w1")
    emulator.inject("PATCH", r"^/api/v1/nodes/", status=409, times=3)

    report = ticks.run()

    assert report["failures"] == {}
    assert pending_writes(emulator, stack.env).empty
    assert ticks.counter(metrics.KUBE_RETRIES, reason="conflict") == 3
    assert ticks.counter(metrics.KUBE_CONFLICTS) == 3
    assert_fsm_matches_cluster(state, emulator)


def test_a_profile_changed_under_the_tick_gets_a_real_409_and_is_reread_and_rewritten(
    cluster_stack: Stack, cluster: ClusterBed, ticks: TickClient, state: store.RedisStore
) -> None:
    # Given four performance nodes with their profiles written
    cluster.seed(4, 0, seed=3)
    cluster_stack.configure(static_hp_frac="1")
    assert cluster_stack.run_cli("reconcile", "--once").returncode == 0
    assert len(cluster.list_objects("nodepowerprofiles")) == 4

    # When the policy turns them all eco, and someone edits each of the first three
    # profiles just before the tick's PUT of it (the server itself answers 409)
    cluster_stack.configure(static_hp_frac="0")
    cluster_stack.start_worker("w1")
    cluster.conflict_on_profile_updates(times=3)
    cluster.reset_counters()
    report = ticks.run()

    # Then each conflicting PUT was re-read, recomputed and applied; nothing failed
    conflicts = [r for r in cluster.proxy.requests() if r.method == "PUT" and r.status == 409]
    assert len(conflicts) == 3
    assert report["failures"] == {}
    assert pending_writes(cluster, cluster_stack.env).empty
    assert {p["spec"]["profile"] for p in cluster.list_objects("nodepowerprofiles")} == {"eco"}
    assert ticks.counter(metrics.KUBE_CONFLICTS) == 3
    assert ticks.counter(metrics.KUBE_RETRIES, reason="conflict") == 3
    assert_fsm_matches_cluster(state, cluster)


def test_a_500_storm_fails_the_tick_cleanly_and_the_next_tick_converges(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore
) -> None:
    emulator.seed(8, 2, seed=4)
    stack.start_worker("w1")
    # Every node list fails for longer than the transient retry budget (5 attempts)
    emulator.inject("GET", r"^/api/v1/nodes$", status=500, times=50)

    at = ticks.send()
    wait_for(lambda: ticks.counter(metrics.TICKS, result="failed") >= 1, what="a failed tick")
    assert ticks.finished(at) is None
    assert state.lock_holder() is None  # released, not left to expire
    assert not state.fsm()

    emulator.clear_faults()
    report = ticks.run()
    assert report["failures"] == {}
    assert pending_writes(emulator, stack.env).empty
    assert_fsm_matches_cluster(state, emulator)


def test_a_worker_killed_mid_batch_leaves_no_false_state_and_the_next_tick_converges(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore
) -> None:
    # Given a converged cluster of performance nodes, its FSM recorded by a finished tick
    stack.configure(write_batch_size=4, write_concurrency=1, static_hp_frac="1")
    emulator.seed(12, 1, seed=5)
    assert stack.run_cli("reconcile", "--once").returncode == 0
    nodes = sorted(n["metadata"]["name"] for n in emulator.list_objects("nodes"))
    before = {node: record.state for node, record in state.fsm().items()}
    assert before == {n: "ActivePerformance" for n in nodes}

    # And slow node patches, so the tick that turns them eco is in flight when it dies
    stack.configure(static_hp_frac="0")
    victim = stack.start_worker("victim")
    emulator.inject("PATCH", r"^/api/v1/nodes/", delay_s=0.4, times=1000)

    def relabelled() -> int:
        return sum(1 for n in nodes if cluster_state(emulator, n) != "ActivePerformance")

    # When the worker is SIGKILLed once more than one batch of label writes landed
    at = ticks.send()
    wait_for(lambda: relabelled() > 4, what="more than one batch of label writes")
    victim.kill()
    landed = relabelled()
    assert landed < len(nodes), "the kill came after the tick's last write"
    assert ticks.finished(at) is None

    # Then the dead tick recorded nothing: every FSM record still shows its pre-tick
    # state (never a state the tick meant to reach but may not have written)
    assert {node: record.state for node, record in state.fsm().items()} == before

    # And after the dead tick's lock expires, a new worker's tick converges
    emulator.clear_faults()
    stack.start_worker("rescuer")
    wait_for(lambda: state.lock_holder() is None, timeout=30, what="the dead tick's lock to expire")
    report = ticks.run()
    assert report["failures"] == {}
    assert pending_writes(emulator, stack.env).empty
    assert_fsm_matches_cluster(state, emulator)
    assert {record.state for record in state.fsm().values()} != {"ActivePerformance"}


def test_two_beats_give_one_reconcile_per_interval(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore
) -> None:
    stack.configure(reconcile_interval="2s")
    emulator.seed(4, 1, seed=6)
    stack.start_worker("w1")
    stack.start_beat("beat-a")
    stack.start_beat("beat-b")

    wait_for(lambda: len(state.tick_summaries()) >= 3, timeout=40, what="three ticks")
    wait_for(
        lambda: ticks.counter(metrics.TICKS, result="duplicate") >= 2,
        timeout=20,
        what="duplicate ticks dropped",
    )
    intervals = [math.floor(t.tick_time / 2.0) for t in state.tick_summaries()]
    assert len(intervals) == len(set(intervals)), intervals


def test_a_dead_lock_holder_blocks_ticks_only_until_its_lock_expires(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore
) -> None:
    emulator.seed(4, 1, seed=8)
    stack.start_worker("w1")
    # Given a lock taken by a tick whose process died (nobody renews it)
    token = state.acquire_lock("dead-tick", ttl_s=4)
    assert token is not None

    # Then a tick meanwhile is skipped and counted, not queued
    at = ticks.send()
    wait_for(lambda: ticks.counter(metrics.TICKS, result="skipped_locked") >= 1, what="a skip")
    assert ticks.finished(at) is None

    # And once the lock expired, ticks run again
    wait_for(lambda: state.lock_holder() is None, timeout=15, what="lock expiry")
    report = ticks.run()
    assert report["nodes"] == 4

    # And the skipped tick was dropped, not retried: counted once, never finished, and
    # no worker holds it for later (a Celery retry would sit in the worker's schedule)
    assert ticks.counter(metrics.TICKS, result="skipped_locked") == 1
    assert ticks.finished(at) is None
    assert [t.tick_time for t in state.tick_summaries()] == [report["tick_time"]]
    inspect = ticks.app.control.inspect(timeout=5.0)
    scheduled = inspect.scheduled()
    assert scheduled is not None, "no worker answered"
    assert all(tasks == [] for tasks in scheduled.values()), scheduled
    reserved = inspect.reserved()
    assert reserved is not None, "no worker answered"
    assert all(tasks == [] for tasks in reserved.values()), reserved


def test_a_backlog_of_stale_ticks_collapses_into_one_reconcile(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore
) -> None:
    # Given five beat ticks queued during an outage (no worker running), 30 s apart
    stack.configure(reconcile_interval="30s")
    emulator.seed(4, 1, seed=9)
    now = time.time()
    sent = [ticks.send(dedup=True, scheduled_at=now - 30 * k) for k in (4, 3, 2, 1, 0)]

    # When a worker comes back
    stack.start_worker("w1")

    # Then only the newest tick reconciles; the stale ones are dropped and counted
    wait_for(lambda: ticks.finished(sent[-1]), what="the newest tick")
    wait_for(lambda: ticks.counter(metrics.TICKS, result="expired") >= 4, what="stale ticks")
    assert [t.tick_time for t in state.tick_summaries()] == [sent[-1]]


def test_reconcile_once_dry_run_changes_nothing_in_the_cluster(
    cluster_stack: Stack, cluster: ClusterBed, state: store.RedisStore
) -> None:
    cluster.seed(6, 2, seed=10)
    before = {
        n["metadata"]["name"]: n["metadata"]["resourceVersion"]
        for n in cluster.list_objects("nodes")
    }

    result = cluster_stack.run_cli(
        "reconcile", "--once", "--dry-run", "--output", "json", "--at", "1700000000"
    )

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["dry_run"] is True
    assert summary["tick_time"] == 1700000000
    assert len(summary["nodes"]) == 6
    assert all(n["write_needed"] for n in summary["nodes"])
    assert writes_made(cluster) == 0
    after = {
        n["metadata"]["name"]: n["metadata"]["resourceVersion"]
        for n in cluster.list_objects("nodes")
    }
    assert after == before
    assert cluster.list_objects("nodepowerprofiles") == []
    assert state.lock_holder() is None


def test_reconcile_once_writes_then_a_second_run_reconciles_again_without_writes(
    cluster_stack: Stack, cluster: ClusterBed, state: store.RedisStore
) -> None:
    cluster.seed(6, 2, seed=11)

    first = cluster_stack.run_cli("reconcile", "--once", "--output", "json")
    second = cluster_stack.run_cli("reconcile", "--once", "--output", "json")

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert json.loads(first.stdout)["written"] > 0
    assert json.loads(second.stdout)["written"] == 0
    assert pending_writes(cluster, cluster_stack.env).empty
    assert_fsm_matches_cluster(state, cluster)


def test_reconcile_once_refuses_while_another_tick_holds_the_lock(
    stack: Stack, emulator: Emulator, state: store.RedisStore
) -> None:
    emulator.seed(2, 0, seed=12)
    assert state.acquire_lock("someone-else", ttl_s=30) is not None

    result = stack.run_cli("reconcile", "--once")

    assert result.returncode != 0
    assert "lock" in result.stderr
    assert "Traceback" not in result.stderr
    assert writes_made(emulator) == 0


def test_reconcile_once_names_its_tick_on_every_request_it_makes(
    stack: Stack, emulator: Emulator, state: store.RedisStore
) -> None:
    # Given a cluster whose nodes all need writing
    emulator.seed(4, 0, seed=14)

    # When one tick runs in the CLI's process
    result = stack.run_cli("reconcile", "--once", "--output", "json")

    # Then every list and every write it made carries X-Joulie-Tick: <token> <tick id>
    assert result.returncode == 0, result.stderr
    tick_id = json.loads(result.stdout)["tick_id"]
    tick_requests = [r for r in emulator.request_log() if "/events" not in r.path]
    writes = [r for r in tick_requests if r.method in ("PATCH", "PUT", "POST")]
    assert len(writes) == 2 * 4  # a label PATCH and a profile create per node
    tags = {r.tick for r in tick_requests}
    assert len(tags) == 1, tags
    token, named = str(tags.pop()).split(" ")
    assert (int(token) > 0, named) == (True, tick_id)


def test_reconcile_once_stops_writing_once_another_holder_advances_the_fence(
    stack: Stack, emulator: Emulator, state: store.RedisStore
) -> None:
    # Given eight nodes to write one at a time, each label PATCH taking 0.5 s
    emulator.seed(8, 0, seed=15)
    stack.configure(write_concurrency=1)
    emulator.inject("PATCH", r"^/api/v1/nodes/", delay_s=0.5, times=-1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(stack.run_cli, "reconcile", "--once")

        # When another holder takes the lock (a newer token) after the first write landed
        wait_for(
            lambda: any(r.method == "PATCH" for r in emulator.request_log()),
            what="the first write",
        )
        holder = state.lock_holder()
        assert holder is not None
        assert state.release_lock(holder)
        assert state.acquire_lock("another-holder", ttl_s=60) is not None
        stolen_at = time.time()
        result = running.result(timeout=60)

    # Then the tick stops: at most the requests already in flight land after the loss
    # (a PATCH takes 0.5 s), nothing is sent later, and the new holder keeps its lock
    assert result.returncode == 3, result.stderr
    assert "lost its lock" in result.stderr
    writes = [r for r in emulator.request_log() if r.method in ("PATCH", "PUT", "POST")]
    assert all(r.tick is not None and r.tick.endswith(holder) for r in writes)
    assert [r for r in writes if r.at > stolen_at + 1.0] == []
    assert len(writes) < 2 * 8
    assert state.lock_holder() == "another-holder"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "redis://127.0.0.1:1/0"),
        ({"KUBECONFIG": "/nonexistent/kubeconfig"}, "/nonexistent/kubeconfig"),
    ],
    ids=["redis-unreachable", "kubeconfig-missing"],
)
def test_reconcile_once_names_an_unreachable_dependency_in_one_line(
    stack: Stack, env: dict[str, str], needle: str
) -> None:
    stack.configure(**{k.lower(): v for k, v in env.items()})
    result = stack.run_cli("reconcile", "--once")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]


def test_reconcile_once_names_an_unreachable_api_server(stack: Stack, emulator: Emulator) -> None:
    url = emulator.url
    emulator.stop()
    result = stack.run_cli("reconcile", "--once")
    assert result.returncode == 1
    assert url.split("//")[1] in result.stderr
    assert "Traceback" not in result.stderr
    emulator.start()  # let the fixture stop it again


MANAGED = {"joulie.io/managed": "true"}


def test_a_deleted_nodes_profile_is_removed_by_the_next_tick(
    cluster_stack: Stack, cluster: ClusterBed, state: store.RedisStore
) -> None:
    # Given three managed nodes with their profiles written
    for name in ("gone-0", "gone-1", "gone-2"):
        cluster.create_node(name, labels=MANAGED)
    assert cluster_stack.run_cli("reconcile", "--once").returncode == 0
    assert len(cluster.list_objects("nodepowerprofiles")) == 3

    # When one node leaves the cluster
    assert cluster.delete_object("nodes", "gone-1")
    cluster.reset_counters()
    assert cluster_stack.run_cli("reconcile", "--once").returncode == 0

    # Then its profile object is deleted, and only that one
    names = {p["spec"]["nodeName"] for p in cluster.list_objects("nodepowerprofiles")}
    assert names == {"gone-0", "gone-2"}
    assert cluster.counters()[("delete", "nodepowerprofiles")] == 1
    assert "gone-1" not in state.fsm()


def test_nodes_whose_names_sanitise_alike_get_distinct_profiles_on_the_server(
    cluster_stack: Stack, cluster: ClusterBed
) -> None:
    # Given nodes whose profile names would collide ("gpu.a" and "gpu-a" → "node-gpu-a")
    for name in ("gpu-a", "gpu.a", "gpu.a.b"):
        cluster.create_node(name, labels=MANAGED)

    # When a tick writes their profiles
    result = cluster_stack.run_cli("reconcile", "--once", "--output", "json")
    assert result.returncode == 0, result.stderr

    # Then the server holds one valid profile per node; the plain name goes to the node
    # whose name already is its sanitised form
    profiles = {
        p["spec"]["nodeName"]: p["metadata"]["name"]
        for p in cluster.list_objects("nodepowerprofiles")
    }
    assert set(profiles) == {"gpu-a", "gpu.a", "gpu.a.b"}
    assert len(set(profiles.values())) == 3
    assert profiles["gpu-a"] == "node-gpu-a"
    assert profiles["gpu.a"].startswith("node-gpu-a-")
    second = cluster_stack.run_cli("reconcile", "--once", "--output", "json")
    assert json.loads(second.stdout)["written"] == 0
