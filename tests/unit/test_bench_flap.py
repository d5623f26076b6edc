"""bench/flap.py's analysis: profile changes from the stream, flaps, eco node-hours,
reaction times and the workload generator (pure functions, no processes)."""

from __future__ import annotations

import pytest

from bench import flap


def entry(node: str, frm: str, to: str, t: float, result: str = "applied") -> dict[str, str]:
    return {"node": node, "from": frm, "to": to, "time": repr(t), "result": result}


def test_only_applied_profile_changes_count() -> None:
    changes = flap.profile_changes(
        [
            entry("a", "ActiveEco", "ActivePerformance", 2.0),
            entry("a", "ActivePerformance", "DrainingPerformance", 3.0),
            entry("a", "DrainingPerformance", "ActiveEco", 4.0),  # label stays eco
            entry("b", "ActivePerformance", "ActiveEco", 1.0, result="deferred"),
            entry("b", "ActivePerformance", "ActiveEco", 1.5, result="held"),
        ]
    )
    assert [(c.node, c.time, c.profile) for c in changes] == [
        ("a", 2.0, "performance"),
        ("a", 3.0, "eco"),
    ]


def test_flaps_count_returns_within_five_minutes_and_eco_time_is_integrated() -> None:
    # a: eco → perf at 100 → eco at 200 (a flap) → perf at 600 (400 s later: no flap)
    changes = [
        flap.Change("a", 100.0, "performance"),
        flap.Change("a", 200.0, "eco"),
        flap.Change("a", 600.0, "performance"),
        flap.Change("b", 50.0, "eco"),
    ]
    figures = flap.analyse(
        changes, initial={"a": "eco", "b": "performance", "c": "eco"}, start=0.0, end=3600.0
    )
    assert figures.changes == 4
    assert figures.flaps == 1
    assert figures.max_changes_one_node == 3
    # eco: a 100 + 400 s, b 3550 s, c 3600 s
    assert figures.eco_node_hours == pytest.approx((100 + 400 + 3550 + 3600) / 3600)
    assert figures.per_node_hour == pytest.approx(4 / 3)


def test_reaction_is_counted_only_for_arrivals_the_record_did_not_cover() -> None:
    samples = [(0.0, 1), (1.0, 1), (2.0, 2), (3.0, 2), (4.0, 3)]
    arrivals = [(0.5, 1), (0.6, 2), (2.5, 3), (3.5, 9)]
    assert flap.reaction_times(arrivals, samples) == [pytest.approx(1.4), pytest.approx(1.5)]


def test_the_workload_is_reproducible_and_poisson_like() -> None:
    a = flap.workload(seconds=600, rate=2.0, lifetime_s=30, seed=1)
    assert a == flap.workload(seconds=600, rate=2.0, lifetime_s=30, seed=1)
    adds = [e for e in a if e[1] == "add"]
    assert 1000 < len(adds) < 1400  # 1,200 expected
    assert all(t < 600 for t, _, _ in a)
    born = {name: t for t, kind, name in a if kind == "add"}
    assert all(t > born[name] for t, kind, name in a if kind == "del")
