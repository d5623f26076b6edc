"""The store on a Sentinel-managed Redis (real master, two replicas and three Sentinels):
it follows the master, the lock and the token survive a failover, tokens grow
across failovers, and a master that lost its replicas confirms no lock and no fence."""

from __future__ import annotations

import signal

import pytest

from joulie_tasks import errors
from joulie_tasks.adapters import store
from joulie_testbed.procs import wait_for
from joulie_testbed.sentinel import (
    DOWN_AFTER_MS,
    SentinelCluster,
    failover_once,
)


@pytest.fixture
def state(sentinel_cluster: SentinelCluster) -> store.RedisStore:
    return store.RedisStore(sentinel_cluster.url, sentinel_master=sentinel_cluster.master_name)


def test_a_lock_taken_before_a_failover_still_fences_on_the_new_master(
    sentinel_cluster: SentinelCluster, state: store.RedisStore
) -> None:
    token = state.acquire_lock("tick-a", ttl_s=60)
    assert token is not None

    failover_once(sentinel_cluster)

    assert wait_for(lambda: state.holds_fence("tick-a", token, ttl_s=60), what="fence")
    assert state.acquire_lock("tick-b", ttl_s=60) is None  # still held: no second leader


def test_tokens_grow_across_failovers_and_carry_the_sentinel_epoch(
    sentinel_cluster: SentinelCluster, state: store.RedisStore
) -> None:
    tokens = []
    for n in range(2):
        token = state.acquire_lock(f"tick-{n}", ttl_s=60)
        assert token is not None
        tokens.append(token)
        state.release_lock(f"tick-{n}")
        failover_once(sentinel_cluster)
    last = wait_for(lambda: state.acquire_lock("tick-last", ttl_s=60), what="a new lock")
    assert tokens[0] < tokens[1] < last
    assert last >> store.EPOCH_SHIFT == sentinel_cluster.epoch() >= 2
    assert not state.holds_fence("tick-1", tokens[1], ttl_s=60)  # overtaken


def test_without_a_replica_no_lock_is_acquired_and_no_fence_holds(
    sentinel_cluster: SentinelCluster, state: store.RedisStore
) -> None:
    token = state.acquire_lock("tick-a", ttl_s=60)
    assert token is not None
    for replica in sentinel_cluster.replicas():
        replica.kill()

    assert not state.holds_fence("tick-a", token, ttl_s=60)
    state.release_lock("tick-a")
    with pytest.raises(errors.StateStoreError, match="not acknowledged by 1 replica"):
        state.acquire_lock("tick-b", ttl_s=60)
    assert state.lock_holder() is None  # let go again: the next tick need not wait


def test_a_stalled_master_that_was_replaced_confirms_no_lock_and_no_fence(
    sentinel_cluster: SentinelCluster, state: store.RedisStore
) -> None:
    # Given a tick holding the lock, and a connection straight to the master (a client
    # that has not yet noticed the failover)
    token = state.acquire_lock("tick-a", ttl_s=60)
    assert token is not None
    old = sentinel_cluster.master()
    stale = store.RedisStore(f"redis://127.0.0.1:{old.port}/0", socket_timeout=10)
    stale.min_replicas = store.MIN_REPLICAS  # the same checks the Sentinel mode makes
    stale.client.delete(store.LOCK_KEY)  # let the stale master hand the lock out again

    # When the master stalls for longer than the Sentinels' down-after and is replaced
    old.signal(signal.SIGSTOP)
    try:
        assert DOWN_AFTER_MS < 10_000
        sentinel_cluster.wait_failover(old.port)
    finally:
        old.signal(signal.SIGCONT)

    # Then, back, it still answers but cannot confirm a lock or a fence to anyone
    with pytest.raises(errors.StateStoreError):
        stale.acquire_lock("tick-stale", ttl_s=60)
    assert not stale.holds_fence("tick-a", token, ttl_s=60)
