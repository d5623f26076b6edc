"""Redis going away: restarted with persistence (FSM and transition stream survive) and
without (FSM rebuilt from node labels, no false transitions); unreachable when a
worker starts (it waits, no crash loop) and in the middle of a tick (the worker
reconnects, the tick is counted as failed, the next one converges).
"""

from __future__ import annotations

import time

import pytest

from joulie_tasks.adapters import store
from joulie_tasks.ports import metrics
from joulie_testbed.chaos import Driver
from joulie_testbed.emulator import Emulator
from joulie_testbed.procs import Stack, wait_for
from joulie_testbed.ticks import TickClient
from tests.chaos.scenario import Chaos, Scenario


def _with_transitions(drive: Driver, emulator: Emulator) -> None:
    """Converge, then hand-flip a performance node so the next tick records a transition."""
    drive.converge(max_ticks=1)
    node = next(
        n["metadata"]["name"]
        for n in emulator.list_objects("nodes")
        if n["metadata"]["labels"].get("joulie.io/power-profile") == "performance"
    )
    emulator.mutate_node_labels(node, {"joulie.io/power-profile": "eco"})
    drive.outcomes.clear()
    drive.converge(max_ticks=1)
    assert drive.state.transitions(), "no transition was recorded"
    drive.outcomes.clear()


@pytest.mark.parametrize("redis_server", [{"appendonly": True}], indirect=True, ids=["aof"])
def test_redis_restarted_with_persistence(
    chaos: Chaos, stack: Stack, emulator: Emulator, state: store.RedisStore
) -> None:
    drive = chaos.start(Scenario(seed=31, nodes=8, pods_per_node=0))
    worker = chaos.worker
    _with_transitions(drive, emulator)
    fsm, stream = state.fsm(), state.transitions()

    # When redis-server restarts from its append-only file under a running worker
    stack.redis.restart()

    # Then FSM and stream are intact, and the next tick finds nothing to do
    assert wait_for(lambda: state.fsm(), what="Redis back") == fsm
    assert state.transitions() == stream
    n = drive.converge(max_ticks=2)
    last = state.tick_summaries()[0].model_dump(mode="json")
    found = chaos.problems()
    if state.transitions() != stream:
        found.append("transition stream changed")
    chaos.row.fill(
        drive,
        found,
        fault="Redis restarted with persistence",
        action="redis-server (appendonly yes) SIGTERMed and restarted under a worker",
        behaviour=(
            f"worker reconnected; FSM ({len(fsm)} nodes) and transition stream ({len(stream)} "
            f"entries) intact; next tick wrote {last['written']}, recorded no transition"
        ),
    )
    assert worker.alive
    assert last["written"] == 0
    assert n <= 2
    assert found == []


def test_redis_restarted_without_persistence(
    chaos: Chaos, stack: Stack, emulator: Emulator, state: store.RedisStore
) -> None:
    drive = chaos.start(Scenario(seed=32, nodes=8, pods_per_node=0))
    worker = chaos.worker
    _with_transitions(drive, emulator)
    fsm = state.fsm()

    # When redis-server restarts with nothing kept
    stack.redis.restart(wipe=True)
    wait_for(lambda: not state.fsm() and state.client.ping(), what="empty Redis")

    # Then the next tick rebuilds the FSM from the node labels, writes nothing and
    # records no transition (nothing changed in the cluster)
    n = drive.converge(max_ticks=2)
    last = state.tick_summaries()[0].model_dump(mode="json")
    rebuilt = state.fsm()
    found = chaos.problems()
    if {k: v.state for k, v in rebuilt.items()} != {k: v.state for k, v in fsm.items()}:
        found.append("FSM rebuilt with different states")
    if state.transitions():
        found.append(f"{len(state.transitions())} false transition(s) recorded")
    chaos.row.fill(
        drive,
        found,
        fault="Redis restarted without persistence",
        action="redis-server restarted empty (no RDB, no AOF) under a worker",
        behaviour=(
            f"worker reconnected; next tick rebuilt the FSM ({len(rebuilt)} nodes) from node "
            f"labels, wrote {last['written']}, recorded no transition"
        ),
    )
    assert worker.alive
    assert last["written"] == 0
    assert n <= 2
    assert found == []


@pytest.mark.parametrize("redis_server", [{"started": False}], indirect=True, ids=["down"])
def test_redis_unreachable_when_the_worker_starts(
    chaos: Chaos, stack: Stack, emulator: Emulator
) -> None:
    emulator.seed(6, 1, seed=33)

    # When a worker starts while Redis is down
    worker = stack.start_worker("w1", wait_ready=False)
    worker.wait_for_log("waiting for Redis", timeout=30)
    started = time.monotonic()
    wait_for(lambda: time.monotonic() - started > 3, what="3 s of outage")
    assert worker.alive  # it waits: no exit, no crash loop

    # Then it connects once Redis is up, and the first tick converges
    stack.redis.start()
    worker.wait_for_log("ready.", timeout=60)
    drive = chaos.driver()
    n = drive.converge(max_ticks=1)
    found = chaos.problems()
    waits = worker.log().count("waiting for Redis")
    chaos.row.fill(
        drive,
        found,
        fault="Redis unreachable at worker start",
        action="worker started with redis-server down; Redis started 3 s later",
        behaviour=(
            f"worker logged 'waiting for Redis' ({waits}x, backing off), stayed up, became ready "
            "when Redis came; first tick converged"
        ),
    )
    assert "secret" not in worker.log()
    assert n == 1
    assert found == []


def test_redis_unreachable_in_the_middle_of_a_tick(
    chaos: Chaos, stack: Stack, emulator: Emulator, ticks: TickClient
) -> None:
    # Given a tick whose snapshot takes 3 s
    emulator.seed(8, 1, seed=34)
    worker = stack.start_worker("w1")
    pid = worker.proc.pid
    emulator.inject("GET", r"^/api/v1/nodes$", delay_s=3)
    drive = chaos.driver()
    drive.send()
    wait_for(lambda: emulator.counters().get(("list", "nodes")), what="the node list")

    # When Redis goes away for 6 s in the middle of it (and comes back empty)
    stack.redis.stop()
    down = time.monotonic()
    wait_for(lambda: time.monotonic() - down > 6, timeout=10, what="6 s of outage")
    stack.redis.start()

    # Then the worker reconnects, the next tick converges, and the lost tick is counted
    # (by the process that lost it, with its next delivery of counters)
    drive.outcomes.append("lost")
    n = drive.converge(max_ticks=3)
    assert ticks.counter(metrics.TICKS, result="failed") == 1
    found = chaos.problems()
    log = worker.log()
    chaos.row.fill(
        drive,
        found,
        fault="Redis unreachable in the middle of a tick",
        action="redis-server stopped for 6 s while the tick's snapshot ran",
        behaviour=(
            "the stage could not store its result: tick abandoned, counted as failed once Redis "
            "was back; worker process stayed up and reconnected; next tick converged"
        ),
    )
    assert worker.alive
    assert worker.proc.pid == pid
    assert log.count(" ready.") == 1, "the worker restarted"
    assert n <= 3
    assert found == []
