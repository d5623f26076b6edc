"""store.py against a real redis-server: the lock, fencing, FSM compare-and-set, the
exactly-once batch count, the bounded stream, and counters kept through an outage."""

from __future__ import annotations

import pytest

from joulie_tasks import errors, ports
from joulie_tasks.adapters import clients, redis_errors, store
from joulie_tasks.core import models
from joulie_testbed.procs import RedisServer


def test_the_lock_is_single_holder_and_each_holder_gets_a_newer_token(
    state: store.RedisStore,
) -> None:
    first = state.acquire_lock("a", ttl_s=30)
    assert first is not None
    assert state.acquire_lock("b", ttl_s=30) is None
    assert state.lock_holder() == "a"
    assert not state.release_lock("b")  # only the holder releases
    assert state.release_lock("a")
    second = state.acquire_lock("b", ttl_s=30)
    assert second is not None
    assert second > first


def test_a_tick_that_lost_the_lock_fails_its_fence_check(state: store.RedisStore) -> None:
    token = state.acquire_lock("old", ttl_s=30)
    assert token is not None
    assert state.holds_fence("old", token, ttl_s=30)
    state.release_lock("old")
    newer = state.acquire_lock("new", ttl_s=30)
    assert newer is not None
    assert not state.holds_fence("old", token, ttl_s=30)
    assert not state.holds_fence("new", token, ttl_s=30)  # right holder, stale token
    assert state.holds_fence("new", newer, ttl_s=30)


def test_an_older_token_never_overwrites_a_newer_fsm_record(state: store.RedisStore) -> None:
    assert state.update_fsm(5, {"n1": {"state": "ActiveEco", "token": 5}}) == 1
    assert state.update_fsm(4, {"n1": {"state": "ActivePerformance", "token": 4}}) == 0
    assert state.fsm()["n1"].state == "ActiveEco"
    assert state.update_fsm(6, {"n1": {"state": "ActivePerformance", "token": 6}}) == 1
    assert state.fsm()["n1"].state == "ActivePerformance"


def test_a_redelivered_batch_is_counted_once_and_only_the_last_batch_ends_the_tick(
    state: store.RedisStore,
) -> None:
    state.start_batches("t", 2)
    state.start_batches("t", 2)  # a redelivered write stage does not reset the count
    assert state.finish_batch("t", 0, ports.state.BatchDone(failures={}, written=3, retries=0)) == 1
    assert (
        state.finish_batch("t", 0, ports.state.BatchDone(failures={}, written=3, retries=0)) is None
    )
    assert (
        state.finish_batch(
            "t", 1, ports.state.BatchDone(failures={"n": "boom"}, written=1, retries=2)
        )
        == 0
    )
    assert state.batch_results("t") == ({"n": "boom"}, 4, 2)
    assert state.mark("t", "finished")
    assert not state.mark("t", "finished")


def test_the_transition_stream_stays_bounded(state: store.RedisStore) -> None:
    eco = models.NodeState.ACTIVE_ECO
    one = models.TransitionEntry.model_validate(
        {"node": "n", "from": eco, "to": eco, "result": "applied"}
        | {"reason": "r", "policy": "p", "tick_id": "t", "time": 1.0}
    ).fields()
    entries = [one | {"node": f"n{i}"} for i in range(3000)]
    state.append_transitions(entries, maxlen=100)
    assert len(state.transitions()) < 300


def test_counters_refused_during_an_outage_are_sent_when_redis_is_back(
    redis_server: RedisServer, state: store.RedisStore
) -> None:
    redis_server.stop()
    with pytest.raises(errors.StateStoreError) as info:
        state.add_counters({"ticks": 1})
    assert str(redis_server.port) in str(info.value)
    state.count_later({"ticks": 1})
    redis_server.start()
    state.add_counters({"writes": 2})
    counters, _ = state.metric_values()
    assert counters == {"ticks": 2.0, "writes": 2.0}


def test_passwords_are_redacted_from_urls() -> None:
    assert redis_errors.redact_url("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redis_errors.redact_url("rediss://user:s3cret@host/0") == "rediss://user:***@host/0"
    assert redis_errors.redact_url("redis://host:6379/0") == "redis://host:6379/0"


def test_the_cache_names_its_server_by_run_id_and_nothing_where_info_is_refused(
    redis_server: RedisServer, state: store.RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    # The watcher's check for another server (D70) reads the run id
    cs = clients.cache(state)
    first = cs.server()
    assert first == state.client.info("server")["run_id"]
    assert cs.server() == first
    # A user whose ACL refuses INFO gets '' (no change can be seen), said once
    state.client.acl_setuser(
        "noinfo",
        enabled=True,
        passwords=["+secret"],
        keys=["*"],
        channels=["*"],
        categories=["+@all"],
        commands=["-info"],
    )
    limited = store.RedisStore(f"redis://noinfo:secret@127.0.0.1:{redis_server.port}/0")
    try:
        cache = clients.cache(limited)
        with caplog.at_level("WARNING"):
            assert cache.server() == ""
            assert cache.server() == ""
        said = [r for r in caplog.records if "which Redis server" in r.getMessage()]
        assert len(said) == 1
        assert "NoPermissionError" in said[0].getMessage()
    finally:
        limited.close()
    # A restarted server is another one
    redis_server.restart()
    assert cs.server() not in ("", first)
