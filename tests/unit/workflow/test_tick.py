"""The workflow over the in-memory store (tests/fakes.py): fast, no sockets, no Celery.

Covers: starting a tick (lock, token, skipped when held), liveness, a whole tick through
the stage table and its batches (runner.run_inline) with writes, the FSM and the tick record,
finishing exactly once, failing (lock released, counted once), fencing (a tick that lost
its lock writes nothing) and the FSM compare-and-set against a newer tick.
"""

from __future__ import annotations

from typing import Any

import pytest

from joulie_tasks import config, errors
from joulie_tasks.ports import metrics
from joulie_tasks.workflow import fence as fencing
from joulie_tasks.workflow import lifecycle, reconcile, runner, tick_end
from tests.fakes import FakeKube, MemoryStateStore

TICK_TIME = 1_700_000_000.0
SETTINGS = config.read_settings(
    {"POLICY_TYPE": "static_partition", "STATIC_HP_FRAC": "0", "WRITE_BATCH_SIZE": "2"}
)


def node(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"joulie.io/managed": "true"}, "uid": name},
        "spec": {},
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi"}},
    }


def cluster(*names: str) -> FakeKube:
    return FakeKube.with_nodes(*map(node, names))


def ticks_counted(state: MemoryStateStore, result: str) -> float:
    return state.counters.get(metrics.field(metrics.TICKS, result=result), 0.0)


def test_a_tick_takes_the_lock_and_a_second_one_is_skipped_and_counted() -> None:
    state = MemoryStateStore()
    first = lifecycle.begin_tick(state=state, settings=SETTINGS, tick_time=TICK_TIME)
    assert first is not None
    assert state.lock_holder() == first.tick_id
    assert lifecycle.begin_tick(state=state, settings=SETTINGS, tick_time=TICK_TIME) is None
    assert ticks_counted(state, "skipped_locked") == 1


def test_a_tick_is_live_only_while_it_holds_the_lock_with_the_newest_token() -> None:
    state = MemoryStateStore()
    ref = lifecycle.begin_tick(state=state, settings=SETTINGS, tick_time=TICK_TIME)
    assert ref is not None
    assert fencing.Fence(ref, state=state, settings=SETTINGS).holds()
    # When its lock expires and another tick starts
    now = state.clock()
    state.clock = lambda: now + SETTINGS.lock_ttl + 1
    newer = lifecycle.begin_tick(state=state, settings=SETTINGS, tick_time=TICK_TIME + 1)
    assert newer is not None
    # Then the first is no longer live, the newer one is
    assert not fencing.Fence(ref, state=state, settings=SETTINGS).holds()
    assert fencing.Fence(newer, state=state, settings=SETTINGS).holds()


def test_a_whole_tick_writes_every_node_in_batches_and_records_the_outcome() -> None:
    # Given five managed nodes, all planned eco, batches of two
    fake, state = cluster("n1", "n2", "n3", "n4", "n5"), MemoryStateStore()

    # When one tick runs through the stage table in this process
    report = runner.run_inline(
        gateway=fake, state=state, cache=None, settings=SETTINGS, tick_time=TICK_TIME
    )

    # Then every node got its profile and label, in three batches, and the tick is recorded
    assert report.written == 2 * 5  # a label PATCH and a profile write per node
    assert sorted(n for verb, res, n in fake.writes if res == "nodepowerprofiles") == [
        f"node-n{i}" for i in range(1, 6)
    ]
    assert state.done[report.tick_id] == {0, 1, 2}
    assert set(state.fsm()) == {"n1", "n2", "n3", "n4", "n5"}
    last = state.tick_summary()
    assert last is not None
    assert last.tick_id == report.tick_id
    assert state.lock_holder() is None  # released at the end
    # And a second tick has nothing to write
    again = runner.run_inline(
        gateway=fake, state=state, cache=None, settings=SETTINGS, tick_time=TICK_TIME + 60
    )
    assert again.written == 0


def test_a_tick_finishes_exactly_once() -> None:
    fake, state = cluster("n1"), MemoryStateStore()
    report = runner.run_inline(
        gateway=fake, state=state, cache=None, settings=SETTINGS, tick_time=TICK_TIME
    )
    ref = lifecycle.TickRef(
        tick_id=report.tick_id, token=1, tick_time=TICK_TIME, started_at=TICK_TIME
    )
    assert tick_end.finish_tick(ref, state=state, cache=None, settings=SETTINGS) is None
    assert len(state.tick_summaries()) == 1


def test_a_failed_tick_releases_its_lock_and_is_counted_once() -> None:
    state = MemoryStateStore()
    ref = lifecycle.begin_tick(state=state, settings=SETTINGS, tick_time=TICK_TIME)
    assert ref is not None
    tick_end.fail_tick(ref, state=state, stage="plan", error=RuntimeError("boom"))
    tick_end.fail_tick(ref, state=state, stage="plan", error=RuntimeError("boom"))
    assert state.lock_holder() is None
    assert ticks_counted(state, "failed") == 1


def test_a_tick_that_lost_its_lock_writes_nothing() -> None:
    # Given a tick stopped before its writes, whose lock then went to a newer tick
    fake, state = cluster("n1", "n2"), MemoryStateStore()
    ref = lifecycle.begin_tick(state=state, settings=SETTINGS, tick_time=TICK_TIME)
    assert ref is not None
    batches = 0
    for stage in reconcile.STAGES:
        batches = (
            reconcile.run_stage(
                stage, ref, gateway=lambda: fake, state=state, cache=None, settings=SETTINGS
            )
            or 0
        )
    assert batches == 1
    state.release_lock(ref.tick_id)
    assert state.acquire_lock("newer", ttl_s=30) is not None

    # When its batch runs
    tick = runner.TickRunner(ref, gateway=lambda: fake, state=state, cache=None, settings=SETTINGS)
    with pytest.raises(runner.TickDropped):
        tick.batch(0)

    # Then it is fenced off: no write reached the cluster
    assert fake.writes == []
    assert ticks_counted(state, "fenced") == 1


def test_the_fsm_keeps_a_newer_ticks_record() -> None:
    fake, state = cluster("n1"), MemoryStateStore()
    state.update_fsm(10**6, {"n1": {"state": "ActivePerformance", "token": 10**6}})
    runner.run_inline(gateway=fake, state=state, cache=None, settings=SETTINGS, tick_time=TICK_TIME)
    assert state.fsm()["n1"].state == "ActivePerformance"


def test_a_tick_whose_lock_is_held_elsewhere_raises_tick_skipped() -> None:
    state = MemoryStateStore()
    state.acquire_lock("other", ttl_s=30)
    with pytest.raises(errors.TickSkipped):
        runner.run_inline(
            gateway=cluster("n1"), state=state, cache=None, settings=SETTINGS, tick_time=TICK_TIME
        )
