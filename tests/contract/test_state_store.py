"""One contract for the StateStore port, run over every implementation.

``memory`` is tests/fakes.py's MemoryStateStore (what the workflow's unit tests use);
``redis`` is the production RedisStore on a private redis-server. Whatever the workflow
relies on is asserted here once, for both (dramatiq's parametrised back-end pattern):
interval claims, the lock and its fencing token, liveness, per-tick data, write batches
counted once, once-only flags, the FSM compare-and-set, transitions, metric values,
the tick records and the pause switch. Lock expiry is shown with a short real TTL.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from joulie_tasks import errors, ports
from joulie_tasks.adapters import store
from joulie_tasks.core import models
from joulie_testbed.procs import RedisServer, wait_for
from tests.fakes import MemoryStateStore

TTL = 30.0


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is required in CI (scripts/bootstrap.sh installs it)")
        pytest.skip("redis-server is not installed")
    server = RedisServer(Path(tmp_path_factory.mktemp("redis"))).start()
    yield server.url
    server.stop()


@pytest.fixture(params=["memory", "redis"])
def state(request: pytest.FixtureRequest) -> Iterator[ports.state.StateStore]:
    if request.param == "memory":
        yield MemoryStateStore()
        return
    url = request.getfixturevalue("redis_url")
    redis_store = store.RedisStore(url)
    redis_store.client.flushdb()
    yield redis_store
    redis_store.close()


def test_an_interval_is_claimed_once(state: ports.state.StateStore) -> None:
    assert state.claim_interval(7, ttl_s=TTL)
    assert not state.claim_interval(7, ttl_s=TTL)
    assert state.claim_interval(8, ttl_s=TTL)


def test_the_lock_is_exclusive_and_each_holder_gets_a_newer_token(
    state: ports.state.StateStore,
) -> None:
    # Given a tick holding the lock
    first = state.acquire_lock("t1", ttl_s=TTL)
    assert first is not None
    # Then a second tick is refused, and only the holder may release it
    assert state.acquire_lock("t2", ttl_s=TTL) is None
    assert state.lock_holder() == "t1"
    assert not state.release_lock("t2")
    assert state.release_lock("t1")
    assert state.lock_holder() is None
    # And the next holder's token is newer, and it is the latest tick
    second = state.acquire_lock("t2", ttl_s=TTL)
    assert second is not None
    assert second > first
    assert state.latest_tick() == "t2"


def test_only_the_holder_with_the_newest_token_is_live(state: ports.state.StateStore) -> None:
    token = state.acquire_lock("t1", ttl_s=TTL)
    assert token is not None
    assert state.holds_fence("t1", token, ttl_s=TTL)
    assert not state.holds_fence("t1", token - 1, ttl_s=TTL)
    assert not state.holds_fence("t2", token, ttl_s=TTL)
    assert state.renew_lock("t1", ttl_s=TTL)
    assert not state.renew_lock("t2", ttl_s=TTL)
    # When the lock goes to another tick, the old holder is fenced off
    state.release_lock("t1")
    newer = state.acquire_lock("t2", ttl_s=TTL)
    assert newer is not None
    assert not state.holds_fence("t1", token, ttl_s=TTL)
    assert state.holds_fence("t2", newer, ttl_s=TTL)


def test_a_lock_not_renewed_expires(state: ports.state.StateStore) -> None:
    assert state.acquire_lock("t1", ttl_s=0.2) is not None
    if isinstance(state, MemoryStateStore):  # its clock is injectable: no waiting
        now = state.clock()
        state.clock = lambda: now + 1.0
    wait_for(lambda: state.lock_holder() is None, timeout=5, what="the lock to expire")
    assert state.acquire_lock("t2", ttl_s=TTL) is not None


def test_a_renewed_lock_outlives_its_first_lifetime(state: ports.state.StateStore) -> None:
    assert state.acquire_lock("t1", ttl_s=0.3) is not None
    assert state.renew_lock("t1", ttl_s=TTL)
    # When more than the first lifetime has passed
    if isinstance(state, MemoryStateStore):
        now = state.clock()
        state.clock = lambda: now + 1.0
    else:
        time.sleep(0.6)  # a duration to let pass, not an event to await
    # Then the renewal held: still the holder, still live
    assert state.lock_holder() == "t1"
    assert state.acquire_lock("t2", ttl_s=TTL) is None


def test_the_leader_swap_reports_a_new_process(state: ports.state.StateStore) -> None:
    assert not state.swap_leader("a")
    assert not state.swap_leader("a")
    assert state.swap_leader("b")


def test_per_tick_models_round_trip_and_a_missing_one_is_an_error(
    state: ports.state.StateStore,
) -> None:
    demand = models.Demand(performance_pods=3)
    state.save_demand("t1", demand)
    assert state.load_demand("t1") == demand
    with pytest.raises(errors.StateStoreError):
        state.load_plan("t1")


def test_each_batch_counts_once_and_the_last_one_reaches_zero(
    state: ports.state.StateStore,
) -> None:
    # Given three batches handed out (a redelivered write stage does not reset them)
    state.start_batches("t1", 3)
    state.start_batches("t1", 3)
    assert state.writes_started("t1") is not None
    assert state.writes_started("t2") is None
    # When they finish, one redelivered
    counted = {"joulie_writes_total": 2.0}
    assert (
        state.finish_batch(
            "t1", 0, ports.state.BatchDone(failures={}, written=2, retries=0, counters=counted)
        )
        == 2
    )
    assert (
        state.finish_batch(
            "t1", 0, ports.state.BatchDone(failures={}, written=2, retries=0, counters=counted)
        )
        is None
    )
    assert (
        state.finish_batch(
            "t1", 1, ports.state.BatchDone(failures={"n1": "boom"}, written=1, retries=2)
        )
        == 1
    )
    assert (
        state.finish_batch("t1", 2, ports.state.BatchDone(failures={}, written=3, retries=1)) == 0
    )
    # Then the results add up once
    assert state.batch_results("t1") == ({"n1": "boom"}, 6, 3)
    assert state.metric_values()[0] == {"joulie_writes_total": 2.0}
    state.add_skipped("t1", {"gone": "deleted"})
    assert state.skipped_nodes("t1") == {"gone"}


def test_a_flag_is_set_once(state: ports.state.StateStore) -> None:
    assert state.mark("t1", "finished")
    assert not state.mark("t1", "finished")
    assert state.mark("t2", "finished")


def test_the_fsm_is_never_overwritten_by_an_older_token(state: ports.state.StateStore) -> None:
    eco, perf = "ActiveEco", "ActivePerformance"
    assert state.update_fsm(5, {"a": {"state": eco, "token": 5}}) == 1
    # An older tick loses, a newer one wins, per node
    written = state.update_fsm(
        4, {"a": {"state": perf, "token": 4}, "b": {"state": eco, "token": 4}}
    )
    assert written == 1
    assert state.update_fsm(6, {"a": {"state": perf, "token": 6}}) == 1
    records = state.fsm()
    assert records["a"] == models.FsmRecord(state=models.NodeState.ACTIVE_PERFORMANCE, token=6)
    assert records["b"].token == 4
    # Nodes no longer decided are forgotten, unless a newer token wrote them
    assert state.update_fsm(5, {}, forget=["a", "b", "gone"]) == 0
    assert set(state.fsm()) == {"a"}
    assert state.update_fsm(6, {}, forget=["a"]) == 0
    assert set(state.fsm()) == set()


def _entry(node: str, to: models.NodeState) -> models.TransitionEntry:
    return models.TransitionEntry(
        node=node,
        from_state=models.NodeState.ACTIVE_PERFORMANCE,
        to_state=to,
        result=models.TransitionResult.APPLIED,
        reason="planned",
        policy="static",
        tick_id="t1",
        time=100.5,
    )


def test_transitions_are_kept_in_order(state: ports.state.StateStore) -> None:
    eco, draining = models.NodeState.ACTIVE_ECO, models.NodeState.DRAINING_PERFORMANCE
    entries = [_entry("a", eco).fields(), _entry("b", draining).fields()]
    state.append_transitions(entries, maxlen=100)
    rows = state.transitions()
    assert [(r.node, r.to_state) for r in rows] == [("a", eco), ("b", draining)]
    assert all(r.id for r in rows)


def test_counters_add_up_and_increments_kept_for_later_are_sent_with_the_next(
    state: ports.state.StateStore,
) -> None:
    state.add_counters({"c": 1.0})
    state.count_later({"c": 2.0})
    assert state.metric_values()[0] == {"c": 1.0}
    state.add_counters({"d": 1.0})
    state.set_gauges({"g": 4.5})
    assert state.metric_values() == ({"c": 3.0, "d": 1.0}, {"g": 4.5})


def _summary(tick_id: str) -> models.TickSummary:
    return models.TickSummary(
        tick_id=tick_id,
        tick_time=100.0,
        policy="static",
        nodes=1,
        writes_planned=0,
        written=0,
        retries=0,
        failures={},
        applied=0,
        deferred=0,
        duration_s=0.1,
        dry_run=False,
        paused=False,
    )


def test_tick_records_newest_first(state: ports.state.StateStore) -> None:
    assert state.tick_summary() is None
    state.set_last_tick(_summary("t1").model_dump(mode="json"))
    state.set_last_tick(_summary("t2").model_dump(mode="json"))
    assert state.tick_summary() == _summary("t2")
    assert [t.tick_id for t in state.tick_summaries()] == ["t2", "t1"]


def test_the_pause_switch(state: ports.state.StateStore) -> None:
    assert not state.is_paused()
    state.set_paused(True)
    assert state.is_paused()
    state.set_paused(False)
    assert not state.is_paused()


def test_records_read_back_as_the_models_written(state: ports.state.StateStore) -> None:
    record = models.FsmRecord(
        state=models.NodeState.ACTIVE_ECO,
        profile=models.Profile.ECO,
        since=100.5,
        tick_id="t1",
        token=3,
        performance_pods=0,
        written=True,
    )
    state.update_fsm(3, {"a": record.model_dump(mode="json")})
    assert state.fsm() == {"a": record}
    entry = _entry("a", models.NodeState.ACTIVE_ECO)
    state.append_transitions([entry.fields()], maxlen=100)
    (read,) = state.transitions()
    assert read.model_copy(update={"id": ""}) == entry
    assert read.id
    assert read.fields()["time"] == "100.5"  # the stream format of earlier releases
    summary = _summary("t1")
    assert state.tick_summary() is None
    state.set_last_tick(summary.model_dump(mode="json"))
    assert state.tick_summary() == summary
    assert state.tick_summaries() == [summary]


def test_downgrades_are_spent_with_the_fsm_and_only_where_it_was_written(
    state: ports.state.StateStore,
) -> None:
    # Given node a written by a newer tick (token 9)
    state.update_fsm(9, {"a": {"state": "ActivePerformance", "token": 9}})
    # When tick t5 (token 5) records downgrades of a and b
    spend = ports.state.Spend(nodes=("a", "b"), time=1000.0, keep_after=0.0, tick_id="t5")
    records = {"a": {"state": "ActiveEco", "token": 5}, "b": {"state": "ActiveEco", "token": 5}}
    assert state.update_fsm(5, records, spend=spend) == 1
    # Then only b, whose record was written, spends the budget
    assert state.downgrades_since(999.0) == 1
    assert state.downgrades_since(1000.0) == 0  # the window's start is exclusive
    # And the same tick recorded again spends nothing more (one entry per tick and node)
    state.update_fsm(5, records, spend=spend)
    assert state.downgrades_since(0.0) == 1


def test_the_downgrade_ledger_counts_a_sliding_window_and_trims_old_entries(
    state: ports.state.StateStore,
) -> None:
    for i, t in enumerate((100.0, 200.0, 300.0)):
        node = f"n{i}"
        spend = ports.state.Spend(nodes=(node,), time=t, keep_after=0.0, tick_id=f"t{i}")
        state.update_fsm(i + 1, {node: {"state": "ActiveEco", "token": i + 1}}, spend=spend)
    assert [state.downgrades_since(s) for s in (50.0, 150.0, 250.0, 300.0)] == [3, 2, 1, 0]
    # A later tick trims what is before its keep_after
    spend = ports.state.Spend(nodes=("n9",), time=400.0, keep_after=250.0, tick_id="t9")
    state.update_fsm(9, {"n9": {"state": "ActiveEco", "token": 9}}, spend=spend)
    assert state.downgrades_since(0.0) == 2


def _converged(rev: int) -> models.Converged:
    return models.Converged(
        rev=rev,
        settings="s",
        tick_id="t2",
        tick_time=100.0,
        until=700.0,
        policy="static_partition",
        nodes=2,
        draining=("a",),
    )


def test_an_overtaken_tick_writes_no_fsm_record_and_keeps_the_converged_one(
    state: ports.state.StateStore,
) -> None:
    # Given tick t1 overtaken by t2 (t1's lock lost, t2 holding the newest token)
    old = state.acquire_lock("t1", ttl_s=TTL)
    assert old is not None
    assert state.release_lock("t1")
    new = state.acquire_lock("t2", ttl_s=TTL)
    assert new is not None
    assert new > old
    converged = _converged(7)
    assert state.update_fsm(new, {"a": {"state": "ActiveEco", "token": new}}, converged=converged)
    assert state.converged() == converged
    # When t1 records its outcome, for a node t2 wrote and one t2 left alone
    records = {
        "a": {"state": "ActivePerformance", "token": old},
        "b": {"state": "ActivePerformance", "token": old},
    }
    # Then nothing lands and nothing is forgotten: an unchanged record may carry an
    # older token, so the whole call is fenced, not each record
    assert state.update_fsm(old, records, converged=None, forget=["a"]) == 0
    assert set(state.fsm()) == {"a"}
    assert state.fsm()["a"].state is models.NodeState.ACTIVE_ECO
    assert state.converged() == converged
    # And the live tick, with nothing to send and no converged record, removes it
    assert state.update_fsm(new, {}, converged=None) == 0
    assert state.converged() is None
