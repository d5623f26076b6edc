"""Damping through whole ticks over the in-memory store (docs/SPEC.md §12).

- a dwell holds a downgrade until it has passed: nothing is written meanwhile, the FSM
  says why, and the hold is counted, streamed and announced once, not every tick;
- the budget ledger is spent at the end of the tick and read by every later tick, so a
  burst of kicks cannot spend it twice; it refills as the window slides;
- a freezing schedule window holds every downgrade and lets upgrades through;
- with no damping configured the FSM and ledger are not read (the reference);
- property: whole ticks over any demand sequence never exceed the budget in the cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from joulie_tasks import config
from joulie_tasks.core import models
from joulie_tasks.ports import metrics
from joulie_tasks.workflow import events, reconcile, runner, tick_end
from tests.fakes import FakeKube, MemoryStateStore

T0 = 1_700_000_000.0  # a Tuesday, 22:13 UTC
QUEUE = {
    "POLICY_TYPE": "queue_aware_v1",
    "QUEUE_HP_BASE_FRAC": "0",
    "QUEUE_HP_MIN": "0",
    "QUEUE_PERF_PER_HP_NODE": "1",
}


def node(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"joulie.io/managed": "true"}, "uid": name},
        "spec": {},
        "status": {},
    }


def pending_perf_pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": name},
        "spec": {"nodeSelector": {"joulie.io/power-profile": "performance"}},
        "status": {"phase": "Pending"},
    }


def cluster(*names: str) -> FakeKube:
    return FakeKube.with_nodes(*map(node, names))


def set_demand(fake: FakeKube, count: int) -> None:
    for key in [k for k in fake.objects if k[0] == "pods"]:
        del fake.objects[key]
    for i in range(count):
        fake.add("pods", pending_perf_pod(f"perf-{i}"))


def profiles(fake: FakeKube) -> dict[str, str]:
    return {
        name: obj["metadata"]["labels"].get("joulie.io/power-profile", "-")
        for (res, name), obj in fake.objects.items()
        if res == "nodes"
    }


def held_counted(state: MemoryStateStore, reason: str) -> float:
    return state.counters.get(metrics.field(metrics.TRANSITIONS_HELD, reason=reason), 0.0)


def tick(fake: FakeKube, state: MemoryStateStore, cfg: config.Settings, at: float) -> Any:
    return runner.run_inline(gateway=fake, state=state, cache=None, settings=cfg, tick_time=at)


def test_a_dwell_holds_a_downgrade_once_announced_until_it_has_passed() -> None:
    cfg = config.read_settings({**QUEUE, "MIN_PROFILE_DWELL": "5m"})
    fake, state = cluster("a"), MemoryStateStore()
    # Given a node that went performance at T0 for one performance pod
    set_demand(fake, 1)
    tick(fake, state, cfg, T0)
    assert profiles(fake) == {"a": "performance"}
    assert state.fsm()["a"].profile_since == T0

    # When the pod goes 10 s later and two ticks (a kick and another) run
    set_demand(fake, 0)
    first = tick(fake, state, cfg, T0 + 10)
    writes_before = len(fake.writes)
    second = tick(fake, state, cfg, T0 + 20)

    # Then the node stays performance, with nothing written by the second tick
    assert profiles(fake) == {"a": "performance"}
    assert len(fake.writes) == writes_before
    record = state.fsm()["a"]
    assert (record.state, record.held_by, record.profile_since) == (
        models.NodeState.ACTIVE_PERFORMANCE,
        models.HoldReason.DWELL,
        T0,
    )
    # And the hold is counted, streamed and announced once
    assert held_counted(state, "dwell") == 1
    held = [t for t in state.transitions() if t.result is models.TransitionResult.HELD]
    assert [(t.from_state, t.to_state, t.reason) for t in held] == [
        (
            models.NodeState.ACTIVE_PERFORMANCE,
            models.NodeState.ACTIVE_ECO,
            "dwell: profile changed 10s ago (MIN_PROFILE_DWELL 5m)",
        )
    ]
    assert [b["reason"] for b in tick_end.event_bodies(first)] == [events.HELD_REASON]
    assert tick_end.event_bodies(second) == []

    # When the dwell has passed, the node is downgraded and the hold ends
    tick(fake, state, cfg, T0 + 300)
    assert profiles(fake) == {"a": "eco"}
    assert state.fsm()["a"].held_by is None
    assert state.fsm()["a"].profile_since == T0 + 300


def test_an_upgrade_is_not_delayed_by_the_dwell_by_default() -> None:
    cfg = config.read_settings({**QUEUE, "MIN_PROFILE_DWELL": "5m"})
    fake, state = cluster("a"), MemoryStateStore()
    tick(fake, state, cfg, T0)  # eco at T0
    set_demand(fake, 1)
    tick(fake, state, cfg, T0 + 1)
    assert profiles(fake) == {"a": "performance"}


def test_the_budget_is_shared_by_every_tick_and_refills_as_the_window_slides() -> None:
    cfg = config.read_settings({**QUEUE, "DOWNGRADE_BUDGET": "1", "DOWNGRADE_BUDGET_WINDOW": "10m"})
    fake, state = cluster("a", "b", "c"), MemoryStateStore()
    set_demand(fake, 3)
    tick(fake, state, cfg, T0)
    assert set(profiles(fake).values()) == {"performance"}

    # When demand goes and a burst of kicked ticks runs within the same minute
    set_demand(fake, 0)
    for i in range(5):
        tick(fake, state, cfg, T0 + 1 + i)

    # Then exactly one node was downgraded, the others held by the budget (one event each)
    assert sorted(profiles(fake).values()) == ["eco", "performance", "performance"]
    assert held_counted(state, "budget") == 2
    assert state.downgrades_since(T0) == 1

    # When the window has slid past the first downgrade, one more may go
    tick(fake, state, cfg, T0 + 1 + 600)
    assert sorted(profiles(fake).values()) == ["eco", "eco", "performance"]


def test_a_freezing_window_holds_downgrades_and_lets_upgrades_through(tmp_path: Path) -> None:
    path = tmp_path / "schedule.yaml"
    path.write_text(
        "windows:\n"
        "  - name: all-day\n"
        "    cron: '0 0 * * *'\n"
        "    duration: 24h\n"
        "    freeze_downgrades: true\n"
    )
    cfg = config.read_settings({**QUEUE, "SCHEDULE_FILE": str(path)})
    fake, state = cluster("a", "b"), MemoryStateStore()
    # Given one node performance and one eco (a first profile is not a downgrade)
    set_demand(fake, 1)
    tick(fake, state, cfg, T0)
    assert sorted(profiles(fake).values()) == ["eco", "performance"]
    # When demand rises, the upgrade goes through the frozen window
    set_demand(fake, 2)
    tick(fake, state, cfg, T0 + 1)
    assert sorted(profiles(fake).values()) == ["performance", "performance"]
    # When demand goes, no downgrade is written while the window is open
    set_demand(fake, 0)
    writes = len(fake.writes)
    tick(fake, state, cfg, T0 + 2)
    assert sorted(profiles(fake).values()) == ["performance", "performance"]
    assert [w for w in fake.writes[writes:] if w[0] != "create"] == []  # only the events
    assert {r.held_by for r in state.fsm().values()} == {models.HoldReason.FREEZE}
    assert held_counted(state, "freeze") == 2


def test_without_damping_neither_the_fsm_nor_the_ledger_is_read() -> None:
    class Untouchable(MemoryStateStore):
        def downgrades_since(self, since: float) -> int:
            raise AssertionError("the ledger was read")

    state = Untouchable()
    cfg = config.read_settings(QUEUE)
    assert reconcile.damping_inputs(state, settings=cfg, tick_time=T0) == (None, 0)
    with_dwell = config.read_settings({**QUEUE, "MIN_PROFILE_DWELL": "1m"})
    assert reconcile.damping_inputs(state, settings=with_dwell, tick_time=T0) == ({}, 0)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 2),
    st.lists(st.tuples(st.sampled_from([0.0, 1.0, 30.0, 200.0]), st.integers(0, 4)), max_size=12),
)
def test_the_budget_holds_in_the_cluster_over_any_sequence_of_whole_ticks(
    limit: int, steps: list[tuple[float, int]]
) -> None:
    """Whole ticks through the workflow (lock, stages, end of tick, ledger): the
    downgrades the *cluster* saw (labels performance → eco) never exceed the budget in
    any window, whatever the demand and the gaps between ticks (kicks: 0 s)."""
    window = 300.0
    cfg = config.read_settings(
        {**QUEUE, "DOWNGRADE_BUDGET": str(limit), "DOWNGRADE_BUDGET_WINDOW": "5m"}
    )
    fake, state = cluster("a", "b", "c", "d"), MemoryStateStore()
    set_demand(fake, 4)
    now = T0
    tick(fake, state, cfg, now)
    seen: list[float] = []
    for gap, demand in steps:
        now += gap
        set_demand(fake, demand)
        before = profiles(fake)
        tick(fake, state, cfg, now)
        after = profiles(fake)
        seen += [now for n in before if before[n] == "performance" and after[n] == "eco"]
    for end in seen:
        assert sum(1 for t in seen if end - window < t <= end) <= limit
