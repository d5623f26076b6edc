"""Worker and beat processes dying: SIGKILL during snapshot, plan and a write batch;
beat killed and restarted; two beats at once.

A killed worker's unacknowledged stage stays in the broker (redelivered only after
the visibility timeout), its tick's lock expires after LOCK_TTL, and the next tick
redoes everything from a fresh snapshot (level-based): nothing a dead tick did
half-way is recorded in Redis (the FSM keeps what the last finished tick recorded),
and the next tick leaves Redis and the cluster in agreement.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time

import redis

from joulie_tasks.adapters import store
from joulie_tasks.ports import metrics
from joulie_testbed.chaos import cluster_state, lost
from joulie_testbed.emulator import Emulator
from joulie_testbed.procs import Proc, Stack, wait_for
from joulie_testbed.ticks import TickClient
from tests.chaos.scenario import Chaos, Scenario


def _kill(proc: Proc) -> None:
    proc.kill(signal.SIGKILL)


#: Kubernetes verbs (the emulator's counter keys) that change an object.
_WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


def _group_gone(proc: Proc) -> bool:
    """No process (pool children included) is left in the killed worker's group."""
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_worker_sigkilled_during_snapshot(
    chaos: Chaos, stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore
) -> None:
    # Given a worker whose snapshot hangs on the node list
    scenario = Scenario(
        seed=21, nodes=12, pods_per_node=2, settings={"lock_ttl": "3s"}, worker="victim"
    )
    drive = chaos.start(scenario, ("GET", r"^/api/v1/nodes$", {"delay_s": 3}))
    victim = chaos.worker

    # When the worker is SIGKILLed while it lists nodes
    at, _ = drive.send()
    wait_for(lambda: emulator.counters().get(("list", "nodes")), what="the node list")
    assert state.lock_holder() is not None  # the tick took its lock before the snapshot
    _kill(victim)
    drive.outcomes.append("killed")
    wait_for(lambda: not victim.alive and _group_gone(victim), timeout=10, what="victim dead")

    # Then, once the stalled LIST was served and the dead tick's lock expired (a live
    # tick would have written by then and released it), the dead tick wrote nothing to
    # the cluster and recorded nothing in Redis
    wait_for(
        lambda: any(r.path == "/api/v1/nodes" for r in emulator.request_log()),
        timeout=15,
        what="the stalled node list served",
    )
    wait_for(lambda: state.lock_holder() is None, timeout=30, what="the dead tick's lock expired")
    writes = {k: v for k, v in emulator.counters().items() if k[0] in _WRITE_VERBS}
    assert writes == {}, writes
    assert ticks.finished(at) is None
    assert not state.fsm()

    # And a new worker converges
    stack.start_worker("rescuer")
    n = drive.converge(max_ticks=4)
    found = chaos.problems()
    chaos.row.fill(
        drive,
        found,
        fault="worker SIGKILL during snapshot",
        action="node LIST stalled 3 s; worker process group SIGKILLed mid-request",
        behaviour=(
            "worker dead; the dead tick wrote nothing (no create/update/patch/delete reached "
            "the API) and recorded nothing; its lock expired after LOCK_TTL; next tick on a new "
            "worker re-read everything and converged"
        ),
    )
    assert n <= 4
    assert found == []


def _unacked_tasks(client: redis.Redis) -> list[str]:
    names = []
    for raw in client.hvals("unacked"):
        message = json.loads(raw)[0]
        names.append(message.get("headers", {}).get("task", "?"))
    return names


def test_worker_sigkilled_during_plan(
    chaos: Chaos, stack: Stack, emulator: Emulator, state: store.RedisStore
) -> None:
    # Given a converged cluster and a new policy input (a hand-edited label to restore)
    scenario = Scenario(
        seed=22, nodes=300, settings={"lock_ttl": "3s"}, worker="victim", converged=True
    )
    drive = chaos.start(scenario)
    victim = chaos.worker
    emulator.mutate_node_labels("node-00000", {"joulie.io/power-profile": "eco"})
    fsm_before = state.fsm()

    # When the worker is frozen and killed while its plan stage is delivered, unacked
    client = redis.Redis.from_url(stack.redis.url)
    drive.send()
    wait_for(
        lambda: "joulie.plan" in _unacked_tasks(client),
        timeout=60,
        interval=0.0005,
        what="the plan stage in flight",
    )
    victim.signal_group(signal.SIGSTOP)
    in_flight = _unacked_tasks(client)
    _kill(victim)
    drive.outcomes.append("killed")
    assert in_flight == ["joulie.plan"], in_flight

    # Then the dead tick recorded nothing, and the next tick restores the label
    assert state.fsm() == fsm_before
    stack.start_worker("rescuer")
    n = drive.converge(max_ticks=4)
    found = chaos.problems()
    chaos.row.fill(
        drive,
        found,
        fault="worker SIGKILL during plan",
        action=(
            "worker frozen (SIGSTOP) while the broker showed the plan stage delivered and "
            "unacknowledged, then SIGKILLed"
        ),
        behaviour=(
            "the chain stopped at plan; nothing written, FSM untouched; next tick converged"
        ),
    )
    assert n <= 4
    assert found == []


def test_worker_sigkilled_during_a_write_batch(
    chaos: Chaos, stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore
) -> None:
    # Given a cluster converged to eco (or draining), so the FSM has every node
    settings = dict(lock_ttl="3s", write_batch_size="4", write_concurrency="1", static_hp_frac="0")
    drive = chaos.start(
        Scenario(seed=23, nodes=12, settings=settings, worker="eco", converged=True)
    )
    eco = chaos.worker
    fsm_before = state.fsm()
    assert len(fsm_before) == 12
    assert "ActivePerformance" not in {r.state for r in fsm_before.values()}

    # And a new plan (the policy flipped to all performance) and slow node patches, so
    # a write batch is in flight when the worker dies
    eco.stop()
    stack.configure(static_hp_frac="1")
    victim = stack.start_worker("victim")
    emulator.inject("PATCH", r"^/api/v1/nodes/", delay_s=0.4, times=-1)
    emulator.reset_counters()

    # When the worker is SIGKILLed with a node PATCH applied and the next in flight (the
    # emulator counts a request when it arrives, before the injected delay; the worker is
    # frozen first so that no request arrives while the numbers are read)
    def node_patches_served() -> list[str]:
        return [r.path for r in emulator.request_log() if r.method == "PATCH"]

    at, _ = drive.send()
    wait_for(lambda: emulator.counters().get(("patch", "nodes"), 0) >= 2, what="writes started")
    victim.signal_group(signal.SIGSTOP)
    arrived = emulator.counters()[("patch", "nodes")]
    applied = len(node_patches_served())
    _kill(victim)
    drive.outcomes.append("killed")
    assert not victim.alive
    assert applied >= 1, (applied, arrived)

    # Then (once the emulator has served what was in flight) the cluster is half-written,
    # and the FSM is unchanged: it records only finished ticks
    wait_for(lambda: len(node_patches_served()) == arrived, timeout=10, what="PATCHes served")
    moved = sorted(n for n, r in fsm_before.items() if cluster_state(emulator, n) != r.state)
    half_way = chaos.problems()
    assert state.fsm() == fsm_before
    assert ticks.finished(at) is None
    assert moved, "no node was written before the kill"
    assert len(moved) < len(fsm_before), moved
    assert any(p.startswith("not converged") for p in half_way), half_way

    # And a new worker converges, writing only the nodes the dead tick had not reached
    emulator.clear_faults()
    emulator.reset_counters()
    stack.start_worker("rescuer")
    n = drive.converge(max_ticks=4)
    rewritten = emulator.counters().get(("patch", "nodes"), 0)
    found = chaos.problems()
    chaos.row.fill(
        drive,
        found,
        fault="worker SIGKILL during a write batch",
        action=(
            "cluster converged under an all-eco policy, then the policy flipped to all "
            "performance; node PATCHes slowed to 0.4 s; worker SIGKILLed mid-batch (node "
            f"PATCHes: {applied} applied, {arrived - applied} in flight)"
        ),
        behaviour=(
            f"half-written cluster ({len(moved)} of {len(fsm_before)} nodes relabelled, counting "
            "what was in flight), FSM unchanged (it records only finished ticks); next tick on a "
            f"new worker patched only the {rewritten} nodes still missing"
        ),
    )
    assert rewritten == len(fsm_before) - len(moved)
    assert n <= 4
    assert found == []


def _intervals(state: store.RedisStore, interval: float) -> list[int]:
    return [math.floor(t.tick_time / interval) for t in state.tick_summaries()]


def test_beat_killed_and_restarted(
    chaos: Chaos,
    stack: Stack,
    emulator: Emulator,
    ticks: TickClient,
    state: store.RedisStore,
) -> None:
    # Given beat ticking every 2 s on a converged cluster
    chaos.start(Scenario(seed=24, settings={"reconcile_interval": "2s"}))
    beat = stack.start_beat("beat-1")
    wait_for(lambda: len(state.tick_summaries()) >= 1, timeout=40, what="a beat tick")
    wait_for(lambda: not chaos.problems(), timeout=40, what="convergence")

    # When beat is SIGKILLed, a label is edited by hand while no beat runs, and beat
    # comes back 5 s (2.5 intervals) later
    _kill(beat)
    killed_at = time.time()
    before = len(state.tick_summaries())
    emulator.mutate_node_labels("node-00001", {"joulie.io/power-profile": "weird"})
    wait_for(lambda: time.time() - killed_at >= 5, timeout=10, what="5 s without beat")
    assert len(state.tick_summaries()) == before  # nothing ticks without beat
    stack.start_beat("beat-2")

    # Then ticking resumes (missed ticks are not replayed) and the label is restored
    wait_for(lambda: not chaos.problems(), timeout=40, what="convergence")
    after = len(state.tick_summaries()) - before
    intervals = _intervals(state, 2.0)
    assert len(intervals) == len(set(intervals)), intervals
    found = chaos.problems()
    chaos.row.fault = "beat killed and restarted"
    chaos.row.action = "beat SIGKILLed, a node label hand-edited, beat restarted 5 s later"
    chaos.row.behaviour = (
        "no ticks while beat was down, no replay of missed ones after; the first tick of "
        "the new beat restored the label"
    )
    chaos.row.ticks = f"{after} (beat ticks after the restart)"
    chaos.row.retries = chaos.driver().retries()[1]
    chaos.row.lost = lost(found)
    assert after <= 2
    assert found == []


def test_two_beats_at_once(
    chaos: Chaos, stack: Stack, ticks: TickClient, state: store.RedisStore
) -> None:
    chaos.start(Scenario(seed=25, settings={"reconcile_interval": "2s"}))
    stack.start_beat("beat-a")
    stack.start_beat("beat-b")

    wait_for(lambda: len(state.tick_summaries()) >= 4, timeout=60, what="four ticks")
    wait_for(
        lambda: ticks.counter(metrics.TICKS, result="duplicate") >= 3,
        timeout=30,
        what="duplicate ticks dropped",
    )
    intervals = _intervals(state, 2.0)
    duplicates = int(ticks.counter(metrics.TICKS, result="duplicate"))
    found = chaos.problems()
    chaos.row.fault = "two beats at once"
    chaos.row.action = "two beat processes with a 2 s interval, one worker"
    chaos.row.behaviour = (
        f"one reconcile per interval ({len(intervals)} intervals, {duplicates} duplicate "
        "ticks dropped by the per-interval claim)"
    )
    chaos.row.ticks = f"1 (then one per interval: {len(intervals)} ticks, no duplicate)"
    chaos.row.retries = chaos.driver().retries()[1]
    chaos.row.lost = lost(found)
    assert len(intervals) == len(set(intervals)), intervals
    assert found == []
