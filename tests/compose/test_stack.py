"""The compose stack as users run it: one row per test, in order, on one running stack.

The stack (tests/compose/conftest.py) runs 200 managed nodes on a real kube-apiserver,
Redis with AOF on a volume, three workers, one beat, two watchers and metrics. Its
policy plans one performance node per performance pod, so the tests move the plan by
creating and deleting pods, exactly as a workload would.
"""

from __future__ import annotations

import collections
import re
import time
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.compose.stack import INTERVAL_S, NODES, Stack, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

#: Log line of a write batch a worker finished (Celery's own task log line).
BATCH_DONE = re.compile(r"^(?P<container>\S+)\s+\|.*Task joulie\.write_batch\[[^\]]+\] succeeded")


def performance_pods(stack: Stack, count: int, *, prefix: str) -> None:
    """``count`` pending pods that only a performance node may run (nodeSelector)."""
    core = stack.core()
    for i in range(count):
        core.create_namespaced_pod(
            "default",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"{prefix}-{i:03d}", "labels": {"app": prefix}},
                "spec": {
                    "nodeSelector": {"joulie.io/power-profile": "performance"},
                    "containers": [{"name": "c", "image": "registry.invalid/none:0"}],
                },
            },
        )


def delete_pods(stack: Stack, prefix: str) -> None:
    stack.core().delete_collection_namespaced_pod(
        "default", label_selector=f"app={prefix}", grace_period_seconds=0
    )
    wait_for(
        f"pods {prefix} gone",
        lambda: (
            not stack.core().list_namespaced_pod("default", label_selector=f"app={prefix}").items
        ),
        timeout=60,
    )


def transitions_since(stack: Stack, stream_id: str) -> list[dict[str, str]]:
    entries = stack.redis().xrange("joulie:transitions", min=f"({stream_id}")
    return [fields for _, fields in entries]


def last_stream_id(stack: Stack) -> str:
    last = stack.redis().xrevrange("joulie:transitions", count=1)
    return str(last[0][0]) if last else "0-0"


def fsm_facts(stack: Stack) -> dict[str, tuple[object, ...]]:
    keys = ("state", "profile", "draining", "since")
    return {n: tuple(r.get(k) for k in keys) for n, r in stack.fsm().items()}


def test_up_with_three_workers_converges_200_nodes_with_batches_on_several_workers(
    stack: Stack, row: list[str]
) -> None:
    tick = wait_for("200 nodes converged, all eco", lambda: stack.converged(0), timeout=240)
    up_s = time.monotonic() - stack.up_started
    print(f"compose: up to the first converged tick in {up_s:.1f} s ({tick['tick_id']})")
    assert len(stack.containers("worker")) == 3
    assert all(r["state"] == "ActiveEco" for r in stack.fsm().values()), "FSM: every node eco"
    # Write batches (20 nodes each: 10 for the first tick) ran on more than one worker.
    ran_on = collections.Counter(
        m["container"]
        for line in stack.compose("logs", "--no-color", "worker").splitlines()
        if (m := BATCH_DONE.match(line))
    )
    assert sum(ran_on.values()) >= NODES // 20, ran_on
    assert len(ran_on) >= 2, f"every write batch ran on one worker: {ran_on}"
    row += [
        "`up --scale worker=3`",
        f"stack up from nothing: {NODES} managed nodes, 40 bound pods, no profile yet",
        f"first converged tick {up_s:.1f} s after `up` began; {sum(ran_on.values())} "
        f"write batches on {len(ran_on)} of 3 workers ({', '.join(sorted(ran_on))})",
    ]


def test_the_metrics_container_is_scraped_and_reports_nodes_by_state(
    stack: Stack, row: list[str]
) -> None:
    def nodes_by_state() -> collections.Counter[str] | None:
        text = stack.metrics_text()
        found = collections.Counter(
            m[1]
            for m in re.finditer(
                r'^joulie_operator_node_state\{[^}]*state="(\w+)"[^}]*\} 1\.0$', text, re.M
            )
        )
        return found if sum(found.values()) == NODES else None

    by_state = wait_for("metrics: nodes by state", nodes_by_state, timeout=60)
    assert by_state == {"ActiveEco": NODES}, by_state
    assert re.search(rf"^joulie_managed_nodes {NODES}\.0$", stack.metrics_text(), re.M)
    row += [
        "metrics container scraped",
        "GET /metrics on the published port",
        f"`joulie_operator_node_state`: {by_state['ActiveEco']} nodes ActiveEco; "
        f"`joulie_managed_nodes` {NODES}",
    ]


def test_every_role_runs_as_uid_10001_on_a_read_only_root(stack: Stack, row: list[str]) -> None:
    for service in ("worker", "beat", "watcher", "metrics"):
        for name in stack.containers(service):
            user, read_only = stack.podman(
                "inspect", "--format", "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}", name
            ).split()
            assert (user, read_only) == ("10001:10001", "true"), name
    refused = stack.compose("exec", "-T", "worker", "touch", "/app/x", check=False)
    assert "Read-only file system" in refused
    # The one-shot role too, in the same read-only container (`docker-compose run` needs
    # container links, which podman does not offer).
    out = stack.exec("worker", "joulie-tasks", "reconcile", "--once", "--dry-run")
    assert "(dry run: nothing written)" in out, out
    assert f"{NODES} nodes, 0 writes planned, 0 written, 0 failed" in out, out
    row += [
        "non-root, read-only root filesystem",
        "worker, beat, watcher, metrics containers inspected; `touch /app/x` in a worker; "
        "`exec worker joulie-tasks reconcile --once --dry-run`",
        "every role runs as 10001:10001 with a read-only root (only /tmp is a tmpfs); "
        "the write is refused; the one-shot tick plans 0 writes",
    ]


def test_the_watcher_kicks_a_tick_within_seconds_of_a_burst_of_performance_pods(
    stack: Stack, row: list[str]
) -> None:
    # Right after a beat tick finished the next one is a whole interval away: only a
    # kick from the watcher can apply the burst within a few seconds.
    before = stack.ticks()[-1]["tick_id"]
    wait_for("a beat tick", lambda: stack.ticks()[-1]["tick_id"] != before, timeout=INTERVAL_S * 2)
    created = time.monotonic()
    performance_pods(stack, 30, prefix="burst")
    wait_for(
        "30 nodes performance",
        lambda: collections.Counter(stack.profiles_by_node().values())["performance"] == 30,
        timeout=INTERVAL_S,
        every=0.2,
    )
    reaction = time.monotonic() - created
    print(f"compose: burst of 30 performance pods applied {reaction:.1f} s after creation")
    assert reaction < INTERVAL_S / 2, f"{reaction:.1f} s: that was the beat, not a kick"
    delete_pods(stack, "burst")
    wait_for("back to all eco", lambda: stack.converged(0), timeout=120)
    row += [
        "burst of performance pods",
        f"30 pending performance pods created just after a beat tick (interval {INTERVAL_S:.0f} s)",
        f"the watcher kicked a tick: 30 nodes performance {reaction:.1f} s after the pods "
        "were created; after their deletion all eco again",
    ]


def test_a_worker_killed_during_a_full_flip_loses_nothing_and_transitions_each_node_once(
    stack: Stack, row: list[str]
) -> None:
    stack.exec("worker", "joulie-tasks", "pause")
    mark = last_stream_id(stack)
    performance_pods(stack, NODES, prefix="flip")
    stack.exec("worker", "joulie-tasks", "resume")

    def writing_tick() -> str | None:
        for key in stack.redis().scan_iter("joulie:tick:*:writes-started"):
            tick_id = key.split(":")[2]
            if not stack.redis().exists(f"joulie:tick:{tick_id}:done"):
                return tick_id
        return None

    tick_id = wait_for(
        "the full flip's write stage", writing_tick, timeout=INTERVAL_S * 3, every=0.05
    )
    victim = stack.containers("worker")[0]
    stack.podman("kill", victim)
    wait_for("all 200 nodes performance", lambda: stack.converged(NODES), timeout=240)

    fsm = stack.fsm()
    assert {r["state"] for r in fsm.values()} == {"ActivePerformance"}
    assert not [n for n, r in fsm.items() if r.get("last_error")]
    entries = transitions_since(stack, mark)
    applied = collections.Counter(e["node"] for e in entries if e["result"] == "applied")
    doubled = {n: c for n, c in applied.items() if c != 1}
    assert not doubled, f"nodes transitioned more than once: {doubled}"
    assert {(e["from"], e["to"]) for e in entries} <= {("ActiveEco", "ActivePerformance")}
    # The stream records only ticks that finished. Where the kill lands is a race (a write
    # stage of 200 nodes takes about as long as `podman kill`), so the accounting covers
    # both outcomes: a killed tick that never finished recorded nothing, and the nodes it
    # wrote before its lock expired were found converged by the next tick, which records
    # no transition for them (docs/RELIABILITY.md); a tick that finished (the victim held
    # none of its work) recorded every node it wrote.
    finished = {t["tick_id"] for t in stack.ticks()}
    recorders = collections.Counter(e["tick_id"] for e in entries if e["result"] == "applied")
    assert set(recorders) <= finished, f"entries of ticks that never finished: {recorders}"
    killed_finished = tick_id in finished
    if killed_finished:
        assert recorders[tick_id] > 0, "a finished flip tick recorded its writes"
    fate = "finished (the victim held none of its work)" if killed_finished else "died"
    outcome = (
        f"the killed tick {fate}; {len(applied)} transitions recorded by the ticks that "
        "finished, none twice"
    )
    print(f"compose: killed {victim} during tick {tick_id}; converged; {outcome}")
    row += [
        "`docker kill` of a worker during a full flip",
        f"operator paused, {NODES} performance pods created, resumed; a worker container "
        "SIGKILLed once the flip's write stage had started",
        f"converged: all {NODES} nodes performance on labels, profiles and FSM, no failed "
        f"node; {outcome} (a dead tick records nothing; the nodes it wrote before its "
        "lock expired were found converged)",
    ]


def test_a_restarted_redis_keeps_the_fsm_and_the_stream_and_writes_nothing_after(
    stack: Stack, row: list[str]
) -> None:
    fsm = fsm_facts(stack)
    stream = stack.redis().xrange("joulie:transitions")
    assert len(fsm) == NODES
    assert stream
    writes = stack.apiserver_writes()
    stack.compose("restart", "-t", "10", "redis")
    stack.close()
    stack._redis = None  # the published port is new after a restart
    wait_for("Redis back", lambda: stack.redis().ping(), timeout=60)
    # What each node went through stays, ``since`` included (a lost FSM would be rebuilt
    # with the next tick's time).
    assert fsm_facts(stack) == fsm, "the FSM survived the restart (AOF)"
    assert stack.redis().xrange("joulie:transitions")[: len(stream)] == stream

    restarted = time.time()
    wait_for(
        "two ticks after the restart",
        lambda: len([t for t in stack.ticks() if t["tick_time"] > restarted]) >= 2,
        timeout=INTERVAL_S * 4,
    )
    after = [t for t in stack.ticks() if t["tick_time"] > restarted]
    assert all(t["writes_planned"] == 0 and t["written"] == 0 for t in after), after
    assert stack.apiserver_writes() == writes, "a converged cluster got writes"
    row += [
        "Redis container restarted",
        "`restart redis` (AOF on the redis-data volume) on a converged cluster",
        f"FSM ({len(fsm)} records, `since` included) and stream ({len(stream)} entries) "
        f"survived; {len(after)} ticks after it planned and made 0 writes (the API "
        "server's own request counter unchanged)",
    ]


def test_two_beats_make_one_tick_per_interval(stack: Stack, row: list[str]) -> None:
    stack.compose("up", "-d", "--no-recreate", "--scale", "worker=3", "--scale", "beat=2")
    beats = stack.containers("beat")
    assert len(beats) == 2
    since = time.time()
    wait_for(
        "four intervals of ticks",
        lambda: len([t for t in stack.ticks() if t["tick_time"] > since]) >= 4,
        timeout=INTERVAL_S * 6,
    )
    ticks = [t for t in stack.ticks() if t["tick_time"] > since]
    per_interval = collections.Counter(int(t["tick_time"] // INTERVAL_S) for t in ticks)
    assert max(per_interval.values()) == 1, f"an interval ticked twice: {per_interval}"
    # Both beats really sent a tick each interval: the second was dropped as a duplicate.
    logs = stack.compose("logs", "--no-color", "beat")
    senders = {line.split()[0] for line in logs.splitlines() if "Sending due task" in line}
    assert senders == {name.removeprefix(f"{stack.project}_") for name in beats}, senders
    row += [
        "two beat containers",
        "`up --scale beat=2`; both send a tick every interval",
        f"{len(ticks)} ticks in {len(per_interval)} intervals, never two in one",
    ]


def nodetwins(stack: Stack) -> dict[str, dict[str, Any]]:
    """Every NodeTwin by its ``spec.nodeName``, the way the newest Joulie agent finds its own."""
    objs = k8s.CustomObjectsApi(stack.api()).list_cluster_custom_object(
        "joulie.io", "v1alpha1", "nodetwins"
    )["items"]
    return {o["spec"]["nodeName"]: o for o in objs}


def roll_operator(stack: Stack, output_api: str) -> float:
    """The operator's roles recreated with ``OUTPUT_API=output_api`` (Redis, the control
    plane and the bootstrap job untouched), as a user rolls a setting; returns when."""
    stack.env["OUTPUT_API"] = output_api
    stack.compose(
        "up", "-d", "--no-deps", "--scale", "worker=3", "--scale", "beat=1",
        "worker", "beat", "watcher", "metrics",
        timeout=600,
    )  # fmt: skip
    return time.time()


def settled_ticks(stack: Stack, since: float, count: int) -> list[dict[str, Any]]:
    """The ticks that started after ``since``, once ``count`` of them planned no write."""
    after = [t for t in stack.ticks() if t["tick_time"] > since]
    quiet = [t for t in after if t["writes_planned"] == 0 and not t["failures"]]
    return after if len(quiet) >= count else []


def test_a_migration_with_both_then_nodetwin_gives_every_node_its_twin_and_keeps_profiles(
    stack: Stack, row: list[str]
) -> None:
    labels = stack.profiles_by_node()
    assert len(labels) == NODES
    assert stack.npp_profiles() == labels
    assert nodetwins(stack) == {}, "the default mode wrote NodeTwins"

    # Step 1 of the migration (docs/SPEC.md §13.1): both objects for every node.
    rolled = roll_operator(stack, "both")

    def twins_complete() -> dict[str, dict[str, Any]] | None:
        twins = nodetwins(stack)
        profiles = {n: t["spec"]["profile"] for n, t in twins.items()}
        classes = [(t.get("status") or {}).get("schedulableClass") for t in twins.values()]
        complete = profiles == stack.profiles_by_node() and all(classes)
        return twins if complete and len(twins) == NODES else None

    twins = wait_for("a twin with spec and status per node", twins_complete, timeout=240)
    assert stack.npp_profiles() == stack.profiles_by_node(), "both mode kept the profiles"
    both = wait_for(
        "two ticks in both mode that plan no write",
        lambda: settled_ticks(stack, rolled, 2),
        timeout=INTERVAL_S * 24,
    )

    # Step 2: NodeTwins only; the profiles stay for agents not yet rolled.
    profiles = stack.npp_profiles()
    rolled = roll_operator(stack, "nodetwin")
    writes = stack.apiserver_writes()
    after = wait_for(
        "two ticks in nodetwin mode that plan no write",
        lambda: settled_ticks(stack, rolled, 2),
        timeout=INTERVAL_S * 24,
    )
    assert all(t["writes_planned"] == 0 and t["written"] == 0 for t in after), after
    specs = {n: t["spec"] for n, t in nodetwins(stack).items()}
    assert specs == {n: t["spec"] for n, t in twins.items()}, "a converged twin was rewritten"
    assert stack.npp_profiles() == profiles, "nodetwin mode must leave the profiles alone"
    assert stack.apiserver_writes() == writes, "nodes or profiles written in nodetwin mode"
    row += [
        "migration to NodeTwin",
        "operator roles rolled to `OUTPUT_API=both`, then to `OUTPUT_API=nodetwin`",
        f"both: a NodeTwin with spec and status for each of the {NODES} nodes, matching "
        f"its label and profile ({len(both)} ticks until quiet); nodetwin: "
        f"{len(after)} ticks, 0 writes, twins unchanged, the profiles left in place",
    ]


def test_down_v_leaves_no_container_network_or_volume(stack: Stack, row: list[str]) -> None:
    stack.compose("down", "-v", "--remove-orphans", "-t", "5")
    label = f"label=com.docker.compose.project={stack.project}"
    assert stack.podman("ps", "-a", "--filter", label, "--format", "{{.Names}}").split() == []
    assert stack.podman("volume", "ls", "--filter", label, "--format", "{{.Name}}").split() == []
    networks = stack.podman("network", "ls", "--format", "{{.Name}}").split()
    assert [n for n in networks if n.startswith(stack.project)] == []
    row += ["`down -v`", "the stack taken down", "no container, network or volume left"]
