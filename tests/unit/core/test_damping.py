"""Damping (docs/SPEC.md §12): minimum dwell, downgrade budget, freezes.

- the table of hold decisions (dwell boundaries, upgrades, unknown FSM, legacy records);
- the budget in plan order, with a percentage rounded up;
- a held node keeps its state, cap and draining label and writes nothing;
- a hold is announced once (``hold_started``), again only when its reason changes;
- held nodes do not use up MAX_TRANSITIONS_PER_TICK;
- properties: a dwell never delays an upgrade by default; the budget is never exceeded
  over any sequence of ticks (kicks included); a frozen window writes no downgrade.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from joulie_tasks import config
from joulie_tasks.core import damping, decide, guard, models, write
from tests.unit.builders import (
    DRAINING_LABEL,
    PROFILE_LABEL,
    TICK,
    apply_guard,
    make_node,
    perf_pod,
)

P, E = models.Profile.PERFORMANCE, models.Profile.ECO
H = models.HoldReason
FEW = settings(max_examples=100, deadline=None)
LABELS = {"ActivePerformance": ("performance", "false"), "ActiveEco": ("eco", "false")}
LABELS["DrainingPerformance"] = ("eco", "true")


def guarded_plan(
    current: Mapping[str, str], planned: Mapping[str, models.Profile], *, perf: int = 0
) -> tuple[models.GuardedPlan, list[models.NodeInfo]]:
    """The guard's output for nodes in ``current`` states planned as ``planned``."""
    nodes = [make_node(n, profile=LABELS[s][0], draining=LABELS[s][1]) for n, s in current.items()]
    plan = models.Plan(
        policy_name="static_partition",
        hp_count=sum(p is P for p in planned.values()),
        assignments=tuple(
            models.Assignment(
                node=models.NodeName(n), profile=p, cap_watts=5000.0 if p is P else 120.0
            )
            for n, p in planned.items()
        ),
    )
    pods = [perf_pod(f"p{i}-{n}", node=n) for n in current for i in range(perf)]
    from joulie_tasks.core import classify

    demand = classify.summarise_demand(pods)
    return apply_guard(plan, nodes=nodes, demand=demand), nodes


def record(
    state: str, *, age: float | None = None, legacy: bool = False, held: H | None = None
) -> models.FsmRecord:
    s = models.NodeState(state)
    profile, draining = guard.profile_of(s)
    changed = None if age is None else TICK - age
    return models.FsmRecord(
        state=s,
        profile=profile,
        draining=draining,
        since=changed,
        profile_since=None if legacy else changed,
        held_by=held,
    )


def damp(
    guarded: models.GuardedPlan,
    *,
    history: Mapping[str, models.FsmRecord] | None = None,
    used: int = 0,
    frozen: str | None = None,
    params: models.DampingParams | None = None,
    **settings: object,
) -> models.GuardedPlan:
    """Damp ``guarded`` with ``params`` (or a DampingParams made of ``settings``)."""
    return damping.damp_transitions(
        guarded,
        params=params or models.DampingParams.model_validate(settings),
        context=models.DampingContext(
            tick_time=TICK,
            history=damping.history_of(history or {}),
            downgrades_used=used,
            frozen_by=frozen,
        ),
    )


# --- the table --------------------------------------------------------------------------

CASES = [
    # (current state, planned, FSM record, params, expected hold)
    ("ActivePerformance", E, record("ActivePerformance", age=30), {"min_dwell_s": 60}, H.DWELL),
    ("ActivePerformance", E, record("ActivePerformance", age=60), {"min_dwell_s": 60}, None),
    ("ActivePerformance", E, record("ActivePerformance", age=59.9), {"min_dwell_s": 60}, H.DWELL),
    ("ActivePerformance", E, None, {"min_dwell_s": 60}, None),
    ("ActivePerformance", E, record("ActiveEco", age=1), {"min_dwell_s": 60}, None),
    ("ActivePerformance", E, record("ActivePerformance", age=None), {"min_dwell_s": 60}, None),
    (
        "ActivePerformance",
        E,
        record("ActivePerformance", age=10, legacy=True),
        {"min_dwell_s": 60},
        None,
    ),
    ("ActiveEco", P, record("ActiveEco", age=1), {"min_dwell_s": 60}, None),
    (
        "ActiveEco",
        P,
        record("ActiveEco", age=1),
        {"min_dwell_s": 60, "dwell_upgrades": True},
        H.DWELL,
    ),
    (
        "DrainingPerformance",
        P,
        record("DrainingPerformance", age=1),
        {"min_dwell_s": 60, "dwell_upgrades": True},
        H.DWELL,
    ),
    ("ActiveEco", E, record("ActiveEco", age=1), {"min_dwell_s": 60}, None),
    ("ActivePerformance", P, record("ActivePerformance", age=1), {"min_dwell_s": 60}, None),
    ("ActivePerformance", E, None, {"budget_count": 0}, H.BUDGET),
    ("ActivePerformance", E, None, {"budget_count": 1}, None),
    ("ActiveEco", P, None, {"budget_count": 0}, None),
]
IDS = [
    "downgrade-within-dwell-held",
    "downgrade-at-dwell-boundary-passes",
    "downgrade-just-inside-dwell-held",
    "node-unknown-to-fsm-not-held",
    "fsm-records-another-profile-not-held",
    "fsm-record-without-times-not-held",
    "record-without-profile-time-not-held",
    "upgrade-not-delayed-by-default",
    "upgrade-delayed-when-asked",
    "draining-upgrade-delayed-when-asked",
    "no-profile-change-not-held",
    "performance-stays-not-held",
    "zero-budget-holds-downgrade",
    "budget-of-one-lets-it-pass",
    "budget-never-holds-upgrades",
]


@pytest.mark.parametrize(("state", "planned", "rec", "params", "expected"), CASES, ids=IDS)
def test_hold_table(
    state: str,
    planned: models.Profile,
    rec: models.FsmRecord | None,
    params: dict[str, object],
    expected: H | None,
) -> None:
    guarded, _ = guarded_plan({"n1": state}, {"n1": planned})
    history = {} if rec is None else {"n1": rec}
    (d,) = damp(guarded, history=history, **params).decisions
    assert d.hold is expected
    if expected is None:
        assert d.profile is planned
    else:
        assert d.to_state is d.from_state is models.NodeState(state)
        assert d.transitions == ()
        assert d.hold_detail


def test_no_damping_returns_the_plan_unchanged() -> None:
    guarded, _ = guarded_plan({"a": "ActivePerformance"}, {"a": E})
    assert damp(guarded, history={"a": record("ActivePerformance", age=0)}) is guarded


def test_dwell_detail_names_the_age_and_the_setting() -> None:
    guarded, _ = guarded_plan({"a": "ActivePerformance"}, {"a": E})
    (d,) = damp(
        guarded, history={"a": record("ActivePerformance", age=90)}, min_dwell_s=300
    ).decisions
    assert d.hold_detail == "profile changed 1m30s ago (MIN_PROFILE_DWELL 5m)"


def test_budget_is_spent_in_plan_order_and_counts_what_was_used() -> None:
    current = {n: "ActivePerformance" for n in ("a", "b", "c", "d")}
    guarded, _ = guarded_plan(current, dict.fromkeys(current, E))
    holds = [d.hold for d in damp(guarded, budget_count=3, used=1).decisions]
    assert holds == [None, None, H.BUDGET, H.BUDGET]
    holds = [d.hold for d in damp(guarded, budget_count=3, used=7).decisions]
    assert holds == [H.BUDGET] * 4


def test_dwell_held_nodes_do_not_spend_the_budget() -> None:
    current = {"a": "ActivePerformance", "b": "ActivePerformance"}
    guarded, _ = guarded_plan(current, {"a": E, "b": E})
    history = {"a": record("ActivePerformance", age=5)}
    holds = [
        d.hold for d in damp(guarded, history=history, min_dwell_s=60, budget_count=1).decisions
    ]
    assert holds == [H.DWELL, None]


@pytest.mark.parametrize(
    ("percent", "eligible", "limit"),
    [(10, 5, 1), (10, 30, 3), (10, 31, 4), (0, 10, 0), (100, 7, 7), (33.3, 3, 1)],
    ids=["rounds-up", "exact-no-float-noise", "31-rounds-up", "zero", "all", "fraction"],
)
def test_percentage_budget_rounds_up(percent: float, eligible: int, limit: int) -> None:
    params = models.DampingParams(budget_percent=percent)
    assert damping.budget_limit(params, eligible=eligible) == limit


def test_freeze_holds_downgrades_and_drains_but_not_upgrades() -> None:
    current = {"a": "ActivePerformance", "b": "ActivePerformance", "c": "ActiveEco"}
    guarded, _ = guarded_plan(current, {"a": E, "b": E, "c": P}, perf=1)
    a, b, c = damp(guarded, frozen="office-hours").decisions
    assert (a.hold, b.hold, c.hold) == (H.FREEZE, H.FREEZE, None)
    assert (a.profile, a.draining, a.cap_watts) == (P, False, 5000.0)
    assert a.hold_detail == "downgrades frozen by window 'office-hours'"
    assert c.profile is P


def test_held_upgrade_keeps_eco_cap_and_draining_label() -> None:
    guarded, nodes = guarded_plan({"a": "DrainingPerformance"}, {"a": P})
    history = {"a": record("DrainingPerformance", age=1)}
    damped = damp(guarded, history=history, min_dwell_s=60, dwell_upgrades=True)
    (d,) = damped.decisions
    assert (d.profile, d.draining, d.cap_watts) == (E, True, 120.0)
    writes = write.desired_writes(
        damped, nodes=nodes, profiles=(), profile_label=PROFILE_LABEL, draining_label=DRAINING_LABEL
    )
    assert writes.labels == ()  # labels already say eco + draining


@pytest.mark.parametrize(
    ("previous", "started"),
    [(None, True), (H.DWELL, False), (H.BUDGET, True)],
    ids=["new-hold", "same-hold-goes-on", "reason-changed"],
)
def test_a_hold_is_announced_once_per_reason(previous: H | None, started: bool) -> None:
    guarded, _ = guarded_plan({"a": "ActivePerformance"}, {"a": E})
    history = {"a": record("ActivePerformance", age=1, held=previous)}
    (d,) = damp(guarded, history=history, min_dwell_s=60).decisions
    assert d.hold is H.DWELL
    assert d.hold_started is started


def test_held_nodes_do_not_use_up_max_transitions_per_tick() -> None:
    # Given two performance nodes planned eco, one changed 10 s ago, and a limit of one
    cfg = config.read_settings(
        {
            "MIN_PROFILE_DWELL": "1m",
            "MAX_TRANSITIONS_PER_TICK": "1",
            "STATIC_HP_FRAC": "0",
            "QUEUE_HP_MIN": "0",
        }
    )
    nodes = (make_node("a", profile="performance"), make_node("b", profile="performance"))
    snap = models.Snapshot(tick_time=TICK, nodes=nodes)
    history = {"a": record("ActivePerformance", age=10)}
    # When the core decides
    decisions = decide.decide(snap, settings=cfg, history=history).guarded.decisions
    # Then a is held by the dwell and b still changes (the limit was not spent on a)
    assert [(d.hold, d.postponed, d.profile) for d in decisions] == [
        (H.DWELL, False, P),
        (None, False, E),
    ]


# --- properties -------------------------------------------------------------------------

states = st.sampled_from(["ActivePerformance", "ActiveEco", "DrainingPerformance"])
profiles = st.sampled_from([P, E])
names = st.lists(st.sampled_from("abcdefghij"), min_size=1, max_size=10, unique=True)


@st.composite
def situations(
    draw: st.DrawFn,
) -> tuple[models.GuardedPlan, dict[str, models.FsmRecord], models.DampingParams]:
    nodes = draw(names)
    current = {n: draw(states) for n in nodes}
    guarded, _ = guarded_plan(
        current, {n: draw(profiles) for n in nodes}, perf=draw(st.integers(0, 1))
    )
    history = {
        n: record(draw(states), age=draw(st.floats(0, 1000))) for n in nodes if draw(st.booleans())
    }
    params = models.DampingParams(
        min_dwell_s=draw(st.floats(0, 1000)),
        budget_count=draw(st.none() | st.integers(0, 5)),
    )
    return guarded, history, params


@FEW
@given(situations(), st.integers(0, 10), st.none() | st.just("w"))
def test_a_dwell_never_delays_an_upgrade_by_default(
    situation: tuple[models.GuardedPlan, dict[str, models.FsmRecord], models.DampingParams],
    used: int,
    frozen: str | None,
) -> None:
    guarded, history, params = situation
    damped = damp(guarded, history=history, used=used, frozen=frozen, params=params)
    for before, after in zip(guarded.decisions, damped.decisions, strict=True):
        if before.profile is P:
            assert after == before  # upgrades and staying performance pass untouched


@FEW
@given(
    st.integers(1, 8),
    st.integers(0, 3),
    st.lists(
        st.tuples(st.floats(0, 400), st.lists(profiles, min_size=8, max_size=8)),
        min_size=1,
        max_size=25,
    ),
)
def test_the_budget_is_never_exceeded_over_any_sequence_of_ticks(
    nodes: int, limit: int, ticks: list[tuple[float, list[models.Profile]]]
) -> None:
    """Ticks, kicks and ticks from other workers all run one after the other under the
    lock (each reads the ledger in its guard stage and spends at its end, as
    workflow/tick_end.py does) and read the same ledger: whatever the gaps (0 s for kicks
    in the same second) and plans, no window of the budget's length holds more
    downgrades than the limit. (The one exception, a lock lost at the very end of a
    tick, is docs/SPEC.md D49.)"""
    window = 600.0
    params = models.DampingParams(budget_count=limit, budget_window_s=window)
    names_ = [f"n{i}" for i in range(nodes)]
    current = dict.fromkeys(names_, "ActivePerformance")
    ledger: list[float] = []
    now = TICK
    for gap, planned in ticks:
        now += gap
        guarded, _ = guarded_plan(current, dict(zip(names_, planned, strict=False)))
        used = sum(1 for t in ledger if t > now - window)
        damped = damping.damp_transitions(
            guarded,
            params=params,
            context=models.DampingContext(tick_time=now, downgrades_used=used),
        )
        for d in damped.decisions:
            if damping.is_downgrade(d):
                ledger.append(now)
            current[d.node] = d.to_state.value
    for end in ledger:
        assert sum(1 for t in ledger if end - window < t <= end) <= limit


@FEW
@given(situations(), st.integers(0, 10))
def test_a_frozen_window_writes_no_downgrade(
    situation: tuple[models.GuardedPlan, dict[str, models.FsmRecord], models.DampingParams],
    used: int,
) -> None:
    guarded, history, params = situation
    damped = damp(guarded, history=history, used=used, frozen="office-hours", params=params)
    before = {d.node: d.from_state for d in guarded.decisions}
    nodes = [
        make_node(n, profile=LABELS[s.value][0], draining=LABELS[s.value][1])
        for n, s in before.items()
    ]
    writes = write.desired_writes(
        damped, nodes=nodes, profiles=(), profile_label=PROFILE_LABEL, draining_label=DRAINING_LABEL
    )
    for w in writes.labels:
        if before[w.node] is models.NodeState.ACTIVE_PERFORMANCE:
            assert w.labels[PROFILE_LABEL] == "performance"
    for d in damped.decisions:
        assert not damping.is_downgrade(d)
