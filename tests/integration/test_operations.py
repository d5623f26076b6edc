"""What an operations team uses: status, history, plan (and --server-dry-run), pause and
resume, MAX_TRANSITIONS_PER_TICK, Node events, the metrics endpoint, --help everywhere.

Ticks here run with ``reconcile --once`` (same stages, lock and FSM as a worker's tick)
except where the Celery path itself is the subject (events sent by a task).
"""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from joulie_tasks.adapters import store
from joulie_tasks.ports import metrics
from joulie_testbed.chaos import cluster_state
from joulie_testbed.emulator import Emulator
from joulie_testbed.procs import Proc, Stack, free_port, wait_for
from joulie_testbed.ticks import TickClient
from tests.integration.cluster import ClusterBed


def reconcile(stack: Stack, *extra: str) -> dict[str, object]:
    result = stack.run_cli("reconcile", "--once", "--output", "json", *extra)
    assert result.returncode == 0, result.stderr
    summary: dict[str, object] = json.loads(result.stdout)
    return summary


def node_names(emulator: Emulator | ClusterBed) -> list[str]:
    return sorted(n["metadata"]["name"] for n in emulator.list_objects("nodes"))


def performance_then_eco(stack: Stack, cluster: Emulator | ClusterBed, *, seed: int) -> str:
    """Two nodes reconciled (``reconcile --once``) to performance, then to eco; returns
    the first node's name."""
    cluster.seed(2, 0, seed=seed)
    stack.configure(static_hp_frac="1")
    reconcile(stack)
    stack.configure(static_hp_frac="0")
    reconcile(stack)
    return node_names(cluster)[0]


def test_a_paused_operator_plans_but_writes_nothing_until_resumed(
    cluster_stack: Stack, cluster: ClusterBed, state: store.RedisStore
) -> None:
    cluster.seed(4, 1, seed=1)
    assert cluster_stack.run_cli("pause").returncode == 0

    paused = reconcile(cluster_stack)
    assert paused["paused"] is True
    assert paused["written"] == 0
    assert cluster.list_objects("nodepowerprofiles") == []

    status = json.loads(cluster_stack.run_cli("status", "--output", "json").stdout)
    assert status["paused"] is True
    assert all(n["pending_write"] for n in status["nodes"])

    assert cluster_stack.run_cli("resume").returncode == 0
    resumed = reconcile(cluster_stack)
    assert resumed["paused"] is False
    assert resumed["written"] == 8  # labels and a profile for each of the 4 nodes
    status = json.loads(cluster_stack.run_cli("status", "--output", "json").stdout)
    assert status["paused"] is False
    assert [n["state"] for n in status["nodes"]] == [n["cluster_state"] for n in status["nodes"]]


def test_max_transitions_per_tick_spreads_a_flip_over_ticks_in_plan_order(
    stack: Stack, emulator: Emulator
) -> None:
    emulator.seed(5, 0, seed=2)
    stack.configure(static_hp_frac="1")
    reconcile(stack)
    nodes = node_names(emulator)
    assert {cluster_state(emulator, n) for n in nodes} == {"ActivePerformance"}

    stack.configure(static_hp_frac="0", max_transitions_per_tick="2")
    states = []
    for _ in range(3):
        reconcile(stack)
        states.append([cluster_state(emulator, n) for n in nodes])

    eco, perf = "ActiveEco", "ActivePerformance"
    assert states == [
        [eco, eco, perf, perf, perf],
        [eco, eco, eco, eco, perf],
        [eco] * 5,
    ]


def test_status_and_history_tell_the_story_of_a_node(
    cluster_stack: Stack, cluster: ClusterBed
) -> None:
    first = performance_then_eco(cluster_stack, cluster, seed=3)

    status = cluster_stack.run_cli("status")
    assert status.returncode == 0, status.stderr
    assert re.search(rf"{first}\s+ActiveEco", status.stdout)

    history = json.loads(cluster_stack.run_cli("history", first, "--output", "json").stdout)
    assert [(h["from"], h["to"], h["result"]) for h in history] == [
        ("ActivePerformance", "ActiveEco", "applied")
    ]
    assert {h["node"] for h in history} == {first}
    later = json.loads(cluster_stack.run_cli("history", "--since", "0s", "--output", "json").stdout)
    assert later == []


def test_plan_shows_the_diff_and_writes_nothing(stack: Stack, emulator: Emulator) -> None:
    emulator.seed(3, 1, seed=4)
    result = stack.run_cli("plan", "--output", "json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert [n["write_needed"] for n in plan["nodes"]] == [True, True, True]
    assert emulator.list_objects("nodepowerprofiles") == []
    writes = [k for k in emulator.counters() if k[0] in ("patch", "create", "update")]
    assert writes == []


def test_plan_server_dry_run_validates_writes_without_persisting(
    cluster_stack: Stack, cluster: ClusterBed
) -> None:
    cluster.seed(2, 0, seed=5)
    ok = cluster_stack.run_cli("plan", "--server-dry-run", "--output", "json")
    assert ok.returncode == 0, ok.stderr
    assert cluster.counters()[("create", "nodepowerprofiles")] == 2
    assert cluster.list_objects("nodepowerprofiles") == []
    labels = cluster.get_node(node_names(cluster)[0])["metadata"]["labels"]
    assert "joulie.io/power-profile" not in labels


def test_plan_server_dry_run_reports_a_rejected_write_and_exits_1(
    stack: Stack, emulator: Emulator
) -> None:
    emulator.seed(2, 0, seed=5)
    emulator.inject("POST", "nodepowerprofiles", status=422, times=1)
    rejected = stack.run_cli("plan", "--server-dry-run", "--output", "json")
    assert rejected.returncode == 1
    verdicts = [n["server_dry_run"] for n in json.loads(rejected.stdout)["nodes"]]
    assert sum(1 for v in verdicts if v and v.startswith("rejected")) == 1


def test_node_events_tell_applied_and_newly_deferred_transitions(
    cluster_stack: Stack, cluster: ClusterBed, ticks: TickClient
) -> None:
    # Given performance nodes, one running a performance pod
    cluster.seed(2, 0, seed=6)
    nodes = node_names(cluster)
    cluster_stack.configure(static_hp_frac="1")
    reconcile(cluster_stack)
    cluster.put_object(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "perf", "namespace": "default"},
            "spec": {
                "nodeName": nodes[1],
                "nodeSelector": {"joulie.io/power-profile": "performance"},
                "containers": [{"name": "c", "image": "i"}],
            },
            "status": {"phase": "Running"},
        }
    )

    # When a worker's tick plans both nodes eco
    cluster_stack.configure(static_hp_frac="0")
    cluster_stack.start_worker("w1")
    ticks.run()

    # Then node 0 gets an "applied" event, node 1 a "deferred" one
    def reasons() -> dict[str, str]:
        events = cluster.list_objects("events", "default")
        return {e["involvedObject"]["name"]: e["reason"] for e in events}

    got = wait_for(lambda: len(reasons()) == 2 and reasons(), what="two node events")
    assert got == {
        nodes[0]: "PowerProfileChanged",
        nodes[1]: "PowerProfileDowngradeDeferred",
    }

    # And a deferral that continues is not announced again. (Events go out after the
    # tick, from their own task; so the next tick also starts one deferral, on a node
    # that sorts last: its event is the tick's last, and once it exists every event
    # of that tick has been sent.)
    wait_for(cluster.proxy.idle, what="the proxy to log the last event")
    cluster.create_node("zz-late", labels={"joulie.io/managed": "true"})
    cluster.put_object(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "perf-late", "namespace": "default"},
            "spec": {
                "nodeName": "zz-late",
                "nodeSelector": {"joulie.io/power-profile": "performance"},
                "containers": [{"name": "c", "image": "i"}],
            },
            "status": {"phase": "Running"},
        }
    )
    cluster.reset_counters()
    report = ticks.run()
    assert report["failures"] == {}
    wait_for(lambda: "zz-late" in reasons(), what="the next tick's node event")
    wait_for(cluster.proxy.idle, what="the proxy to log the last event")
    assert cluster.counters()[("create", "events")] == 1
    events = [
        (e["involvedObject"]["name"], e["reason"])
        for e in cluster.list_objects("events", "default")
    ]
    assert sorted(events) == [
        (nodes[0], "PowerProfileChanged"),
        (nodes[1], "PowerProfileDowngradeDeferred"),
        ("zz-late", "PowerProfileDowngradeDeferred"),
    ]


def test_failing_node_events_fail_nothing(
    stack: Stack, emulator: Emulator, ticks: TickClient
) -> None:
    # Given two performance nodes, and an API server that refuses every event
    emulator.seed(2, 0, seed=6)
    stack.configure(static_hp_frac="1")
    reconcile(stack)
    stack.configure(static_hp_frac="0")
    stack.start_worker("w1")
    emulator.inject("POST", "/events", status=500, times=-1)

    # When a worker's tick turns both eco (two applied transitions: two events to send)
    report = ticks.run()

    # Then the tick is whole, no event exists, and each refused event was tried once
    # and reaches the shared request counters (sent after the tick, by its own task)
    assert report["failures"] == {}
    assert report["written"] > 0
    assert report["applied"] == 2
    refused = wait_for(
        lambda: ticks.counter(
            metrics.KUBE_REQUESTS, verb="create", resource="events", outcome="500"
        ),
        timeout=30,
        what="refused event requests counted",
    )
    assert refused == 2
    assert emulator.list_objects("events", "default") == []


def test_the_metrics_endpoint_serves_spec_metrics_from_redis(
    stack: Stack, emulator: Emulator
) -> None:
    first = performance_then_eco(stack, emulator, seed=7)
    port = free_port()
    stack.configure(metrics_addr=f"127.0.0.1:{port}")
    proc = Proc.operator("metrics", ["metrics"], env=stack.env, log=stack.tmp / "metrics.log")
    stack.procs.append(proc)
    proc.wait_for_log("metrics served at")

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()

    def value(series: str) -> float:
        match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
        assert match, f"{series} not in metrics"
        return float(match.group(1))

    assert value(f'joulie_operator_node_state{{node="{first}",state="ActiveEco"}}') == 1
    assert value(f'joulie_operator_node_state{{node="{first}",state="ActivePerformance"}}') == 0
    assert value(f'joulie_operator_node_profile_label{{node="{first}",profile="eco"}}') == 1
    transition = (
        f'joulie_operator_state_transitions_total{{from_state="ActivePerformance",'
        f'node="{first}",result="applied",to_state="ActiveEco"}}'
    )
    assert value(transition) == 1
    assert value('joulie_ticks_total{result="completed"}') == 2
    assert value('joulie_tick_duration_seconds_count{stage="snapshot"}') == 2
    assert value('joulie_kube_requests_total{outcome="200",resource="nodes",verb="list"}') == 2
    assert value("joulie_paused") == 0


@pytest.mark.parametrize(
    "command",
    ["", "worker", "beat", "metrics", "reconcile", "status", "history", "plan", "pause", "resume"],
)
def test_every_command_has_help(stack: Stack, command: str) -> None:
    result = stack.run_cli(*([command] if command else []), "--help")
    assert result.returncode == 0
    assert "usage: joulie-tasks" in result.stdout
