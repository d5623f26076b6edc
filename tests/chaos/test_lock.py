"""The lock's time-to-live shorter than a stalled tick: fencing.

A worker is frozen (SIGSTOP) in the middle of a write batch for longer than
LOCK_TTL, so its lock expires and its renewal thread cannot save it. A new worker,
configured differently (all performance instead of all eco), takes the lock with
a newer fencing token and converges. When the old worker wakes up, it must not
write its stale decisions over the new holder's, nor record anything.
"""

from __future__ import annotations

import signal

from joulie_tasks.adapters import store
from joulie_tasks.ports import metrics
from joulie_testbed.emulator import Emulator
from joulie_testbed.procs import Stack, wait_for
from joulie_testbed.ticks import TickClient
from tests.chaos.scenario import Chaos, Scenario


def test_a_stalled_tick_past_its_lock_ttl_is_fenced_and_the_new_holder_converges(
    chaos: Chaos, stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore
) -> None:
    # Given an all-eco worker whose node patches take 0.5 s each, one at a time
    settings = dict(lock_ttl="2s", write_batch_size="50", write_concurrency="1", static_hp_frac="0")
    scenario = Scenario(seed=51, nodes=8, pods_per_node=0, settings=settings, worker="stale")
    drive = chaos.start(scenario, ("PATCH", r"^/api/v1/nodes/", {"delay_s": 0.5, "times": -1}))
    stale = chaos.worker
    drive.send()
    wait_for(lambda: emulator.counters().get(("patch", "nodes"), 0) >= 2, what="writes started")

    # When it is frozen past its lock's TTL, and an all-performance worker takes over
    stale.signal_group(signal.SIGSTOP)
    drive.outcomes.append("stalled")
    wait_for(lambda: state.lock_holder() is None, timeout=20, what="the stalled lock to expire")
    emulator.clear_faults()
    stack.configure(static_hp_frac="1")
    stack.start_worker("fresh")
    n = drive.converge(max_ticks=3)
    transitions = state.transitions()
    writes_before = emulator.counters().get(("patch", "nodes"), 0)

    # Then the stale worker, woken up, drops the rest of its batch: no write, no record
    stale.signal_group(signal.SIGCONT)
    wait_for(
        lambda: ticks.counter(metrics.TICKS, result="fenced") >= 1,
        timeout=30,
        what="the stale batch fenced",
    )
    stale_writes = emulator.counters().get(("patch", "nodes"), 0) - writes_before
    found = chaos.problems()
    if state.transitions() != transitions:
        found.append("the stale tick recorded transitions")
    if stale_writes:
        found.append(f"the stale tick wrote {stale_writes} node(s) after losing its lock")
    chaos.row.fill(
        drive,
        found,
        fault="lock TTL shorter than a stalled tick",
        action=(
            "LOCK_TTL=2s; worker SIGSTOPped mid-batch until its lock expired; a worker with a "
            "different plan took over; the old one was resumed"
        ),
        behaviour=(
            "new holder got a newer fencing token and converged; the woken tick re-checked its "
            "fence before its next node write, dropped the rest of the batch and recorded nothing"
        ),
    )
    assert n <= 3
    assert found == []
