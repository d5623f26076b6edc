"""The tick runner (workflow/runner.py), the one owner of a tick's guarantees, over the
in-memory store: no sockets, no Celery.

Covers: ``run_inline`` (``reconcile --once``) asks for a gateway named by its tick; a
fence lost between stages drops the next stage (counted ``expired``); a fence taken
by another holder in the middle of the writes stops them (no write after the loss,
counted ``fenced``); a failing stage fails the tick once and frees the lock; the lock
is renewed while a stage runs; request counters are flushed by the runner; no other
module of the package fences, finishes, fails or tags a tick (the source is read).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from joulie_tasks import config, errors
from joulie_tasks.ports import cluster, metrics
from joulie_tasks.workflow import lifecycle, runner
from tests.fakes import FakeKube, MemoryStateStore

TICK_TIME = 1_700_000_000.0
SETTINGS = config.read_settings(
    {
        "POLICY_TYPE": "static_partition",
        "STATIC_HP_FRAC": "0",
        "WRITE_BATCH_SIZE": "10",
        "WRITE_CONCURRENCY": "1",
    }
)


def with_nodes(fake: FakeKube, *names: str) -> FakeKube:
    for name in names:
        fake.add(
            "nodes",
            {
                "metadata": {"name": name, "labels": {"joulie.io/managed": "true"}, "uid": name},
                "spec": {},
                "status": {"allocatable": {"cpu": "8", "memory": "32Gi"}},
            },
        )
    return fake


def ticks_counted(state: MemoryStateStore, result: str) -> float:
    return state.counters.get(metrics.field(metrics.TICKS, result=result), 0.0)


def steal_lock(state: MemoryStateStore) -> None:
    """Another holder takes the lock: the fencing token moves past the running tick's."""
    holder = state.lock_holder()
    assert holder is not None
    assert state.release_lock(holder)
    assert state.acquire_lock("another-holder", ttl_s=30) is not None


class Ticking:
    """A monotonic clock that moves a second per reading: no fence check is ever trusted
    from an earlier one, so every API write asks the store."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def started(state: MemoryStateStore) -> lifecycle.TickRef:
    ref = lifecycle.begin_tick(state=state, settings=SETTINGS, tick_time=TICK_TIME)
    assert ref is not None
    return ref


def test_reconcile_once_names_its_tick_on_the_gateway_it_writes_through() -> None:
    fake, state = with_nodes(FakeKube(), "n1", "n2"), MemoryStateStore()

    report = runner.run_inline(
        gateway=fake, state=state, cache=None, settings=SETTINGS, tick_time=TICK_TIME
    )

    token = state.fence
    assert fake.tick_tags == [f"{token} {report.tick_id}"]
    assert report.written == 4


def test_a_fence_lost_between_stages_drops_the_next_stage_and_counts_it_expired() -> None:
    # Given a tick that took its snapshot
    fake, state = with_nodes(FakeKube(), "n1"), MemoryStateStore()
    ref = started(state)
    tick = runner.TickRunner(ref, gateway=lambda: fake, state=state, cache=None, settings=SETTINGS)
    tick.stage("snapshot")
    # When another holder takes the lock before classify
    steal_lock(state)

    # Then classify is dropped, counted once, and the tick is not failed on top of it
    with pytest.raises(runner.TickDropped):
        tick.stage("classify")
    assert ticks_counted(state, "expired") == 1
    assert ticks_counted(state, "failed") == 0
    assert state.lock_holder() == "another-holder"


class StolenAfterFirstPatch(FakeKube):
    """A cluster whose first label PATCH lands, and then another holder takes the lock."""

    def __init__(self, state: MemoryStateStore) -> None:
        super().__init__()
        self.state = state

    def patch_node_labels(self, name: str, labels: Any, *, dry_run: bool = False) -> dict[str, Any]:
        out = super().patch_node_labels(name, labels, dry_run=dry_run)
        if len(self.writes) == 1:
            steal_lock(self.state)
        return out


def test_reconcile_once_sends_no_write_after_another_holder_advances_the_fence() -> None:
    # Given four nodes to write in one batch, one node at a time
    state = MemoryStateStore()
    fake = with_nodes(StolenAfterFirstPatch(state), "n1", "n2", "n3", "n4")

    # When another holder takes the lock right after the first write lands
    with pytest.raises(runner.TickDropped, match="lost its lock"):
        runner.run_inline(
            gateway=fake,
            state=state,
            cache=None,
            settings=SETTINGS,
            tick_time=TICK_TIME,
            clock=Ticking(),
        )

    # Then nothing more was written: not the node's profile, not the other nodes
    assert fake.writes == [("patch", "nodes", "n1")]
    assert ticks_counted(state, "fenced") == 1
    assert ticks_counted(state, "failed") == 1  # as reconcile --once always counted it
    assert state.lock_holder() == "another-holder"  # never released by the stale tick
    assert state.fsm_records() == {}


def test_a_failing_stage_fails_the_tick_once_and_frees_the_lock() -> None:
    fake, state = with_nodes(FakeKube(), "n1"), MemoryStateStore()
    fake.fail("list", "nodes", errors.KubeFatal("403", status=403))

    with pytest.raises(errors.KubeFatal):
        runner.run_inline(
            gateway=fake, state=state, cache=None, settings=SETTINGS, tick_time=TICK_TIME
        )

    assert ticks_counted(state, "failed") == 1
    assert state.lock_holder() is None


def test_the_lock_is_renewed_while_a_stage_runs() -> None:
    # Given a stage that lists until the lock was renewed behind it (LOCK_TTL 0.3 s)
    cfg = SETTINGS.model_copy(update={"lock_ttl": 0.3})
    renewed = threading.Event()

    class Renewals(MemoryStateStore):
        def renew_lock(self, tick_id: str, *, ttl_s: float) -> bool:
            if threading.current_thread().name == "lock-renewal":
                renewed.set()
            return super().renew_lock(tick_id, ttl_s=ttl_s)

    class SlowList(FakeKube):
        def list_items(self, resource: cluster.Resource, *, page_size: int) -> Any:
            renewed.wait(5)
            return super().list_items(resource, page_size=page_size)

    state = Renewals()
    ref = lifecycle.begin_tick(state=state, settings=cfg, tick_time=TICK_TIME)
    assert ref is not None
    tick = runner.TickRunner(
        ref, gateway=lambda: with_nodes(SlowList(), "n1"), state=state, cache=None, settings=cfg
    )

    # When the snapshot stage runs
    tick.stage("snapshot")

    # Then the renewal thread renewed the lock meanwhile

    assert renewed.is_set()


def test_the_runner_flushes_the_request_counters_of_the_gateway_it_used() -> None:
    fake, state = with_nodes(FakeKube(), "n1"), MemoryStateStore()
    fake.request_counts[("list", "nodes", "200")] = 2
    tick = runner.TickRunner(
        started(state), gateway=lambda: fake, state=state, cache=None, settings=SETTINGS
    )

    tick.stage("snapshot")

    key = metrics.field(metrics.KUBE_REQUESTS, verb="list", resource="nodes", outcome="200")
    assert state.counters[key] == 2
    assert fake.request_counts == {}


def test_only_the_runner_fences_finishes_fails_and_tags_a_tick() -> None:
    # The package's source: no other module asks a fence, ends a tick or tags a request.
    package = Path(runner.__file__).parents[1]
    owned = ("Fence(", "finish_tick(", "fail_tick(", "record_batch(", "for_tick(")
    offenders = {
        (str(path.relative_to(package)), call)
        for path in package.rglob("*.py")
        for call in owned
        if call in path.read_text() and path.name not in ("runner.py", "tick_end.py", "fence.py")
    }
    # for_tick is defined by the port and the official-client gateway.
    assert offenders == {("ports/cluster.py", "for_tick("), ("adapters/kube.py", "for_tick(")}
