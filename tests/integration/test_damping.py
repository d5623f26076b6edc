"""Damping with real processes (docs/SPEC.md §12): a real redis-server, the API emulator,
two Celery workers, the watcher's kicks and manual ticks.

Covers: a downgrade budget is spent once across every tick, kick and worker (the
ledger in Redis), and each held node is announced by exactly one Node event; a dwell
holds a downgrade across kicks while an upgrade goes through at once, and ``status``,
``history`` and ``plan`` show the hold; a freezing schedule window shows in ``status``
and ``plan`` and writes no downgrade; an invalid SCHEDULE_FILE stops a command with
exit code 2 and one line naming the window and the field.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from joulie_tasks.adapters import clients, store
from joulie_tasks.ports import metrics
from joulie_testbed.emulator import Emulator
from joulie_testbed.emulator import seed as seeding
from joulie_testbed.procs import Stack, wait_for
from joulie_testbed.ticks import TickClient

pytestmark = pytest.mark.slow

PROFILE = "joulie.io/power-profile"
QUEUE = {
    "policy_type": "queue_aware_v1",
    "queue_hp_base_frac": "0",
    "queue_hp_min": "0",
    "queue_perf_per_hp_node": "1",
}


def add_nodes(emulator: Emulator, count: int) -> list[str]:
    names = [f"node-{i:02d}" for i in range(count)]
    for name in names:
        emulator.put_object(seeding.make_node(name, labels={"joulie.io/managed": "true"}))
    return names


def perf_pod(name: str) -> dict[str, Any]:
    """A performance-only pod, Pending (bound to no node)."""
    return seeding.make_pod(
        name, namespace="default", shape="selector-performance", node=None, phase="Pending"
    )


def profiles(emulator: Emulator, names: list[str]) -> list[str | None]:
    return [emulator.get_node(n)["metadata"].get("labels", {}).get(PROFILE) for n in names]


def held_events(emulator: Emulator) -> list[str]:
    return sorted(
        e["involvedObject"]["name"]
        for e in emulator.list_objects("events", "default")
        if e["reason"] == "PowerProfileChangeHeld"
    )


def synced(state: store.RedisStore) -> bool:
    status = clients.cache(state).status()
    age = status.age(time.time())
    return all(status.synced.values()) and age is not None and age < 2.0


def test_the_budget_is_spent_once_across_kicks_ticks_and_two_workers(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore
) -> None:
    # Given six performance nodes, two workers and a watcher kicking ticks on changes
    names = add_nodes(emulator, 6)
    for i in range(6):
        emulator.put_object(perf_pod(f"perf-{i}"))
    stack.configure(**QUEUE, downgrade_budget="2", downgrade_budget_window="1h")
    stack.start_worker("w1")
    stack.start_worker("w2")
    ticks.run()
    assert profiles(emulator, names) == ["performance"] * 6
    stack.start_proc("watch", ["watch"], ready="started")
    wait_for(lambda: synced(state), timeout=30, what="a synced, fresh cache")

    # When all demand goes at once (each deletion a change the watcher kicks a tick for)
    for i in range(6):
        emulator.delete_object("pods", f"perf-{i}", "default")

    # Then two nodes are downgraded and four are held by the budget, one event each
    wait_for(
        lambda: (
            sorted(map(str, profiles(emulator, names))).count("eco") == 2
            and len(held_events(emulator)) == 4
        ),
        timeout=60,
        what="two downgrades and four budget holds announced",
    )
    # And more ticks, from both the broker and new kicks, spend nothing more
    for _ in range(3):
        ticks.run()
    emulator.put_object(perf_pod("blip"))  # a change: the watcher kicks again
    emulator.delete_object("pods", "blip", "default")
    ticks.run()
    assert sorted(map(str, profiles(emulator, names))).count("eco") == 2
    assert state.downgrades_since(0.0) == 2
    assert ticks.counter(metrics.TRANSITIONS_HELD, reason="budget") == 4
    last_held = held_events(emulator)
    assert len(last_held) == 4  # a hold that goes on is not announced again
    assert len(set(last_held)) == 4


def test_a_dwell_holds_a_downgrade_across_kicks_and_the_cli_shows_it(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore
) -> None:
    # Given one eco node, a dwell of an hour and a watcher
    names = add_nodes(emulator, 1)
    stack.configure(**QUEUE, min_profile_dwell="1h")
    stack.start_worker("w1")
    stack.start_worker("w2")
    ticks.run()
    assert profiles(emulator, names) == ["eco"]
    stack.start_proc("watch", ["watch"], ready="started")
    wait_for(lambda: synced(state), timeout=30, what="a synced, fresh cache")
    # A dwell does not stop a steady cluster's ticks from running quiet (§9.10)
    ticks.run_until_quiet()

    # When a performance pod arrives, the upgrade is not delayed by the dwell
    emulator.put_object(perf_pod("perf"))
    wait_for(lambda: profiles(emulator, names) == ["performance"], what="the upgrade")

    # When it goes, the downgrade is held (kicked ticks included), announced once
    emulator.delete_object("pods", "perf", "default")
    wait_for(lambda: held_events(emulator) == names, what="the dwell hold's event")
    # (while a hold lasts, every tick is a full one: the hold waits on time)
    assert not ticks.run()["quiet"]
    assert not ticks.run()["quiet"]
    assert profiles(emulator, names) == ["performance"]
    assert held_events(emulator) == names

    # And status, history and plan say why
    status = json.loads(stack.run_cli("status", "--output", "json").stdout)
    assert [n["held_by"] for n in status["nodes"]] == ["dwell"]
    assert status["damping"]["min_profile_dwell_s"] == 3600
    text = stack.run_cli("status").stdout
    assert "damping: dwell 1h" in text
    history = json.loads(stack.run_cli("history", "--output", "json").stdout)
    held = [h for h in history if h["result"] == "held"]
    assert len(held) == 1
    assert held[0]["reason"].startswith("dwell: profile changed ")
    plan = json.loads(stack.run_cli("plan", "--output", "json").stdout)
    assert [(n["held_by"], n["profile"]) for n in plan["nodes"]] == [("dwell", "performance")]
    assert ticks.counter(metrics.TRANSITIONS_HELD, reason="dwell") == 1


def test_a_freezing_window_shows_in_status_and_plan_and_writes_no_downgrade(
    stack: Stack, emulator: Emulator, ticks: TickClient, tmp_path: Path
) -> None:
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text(
        "windows:\n"
        "  - name: always\n"
        "    cron: '0 0 * * *'\n"
        "    duration: 24h\n"
        "    timezone: Europe/Rome\n"
        "    freeze_downgrades: true\n"
    )
    names = add_nodes(emulator, 2)
    emulator.put_object(perf_pod("p1"))
    emulator.put_object(perf_pod("p2"))
    stack.configure(**QUEUE, schedule_file=str(schedule))
    stack.start_worker("w1")
    ticks.run()
    assert profiles(emulator, names) == ["performance", "performance"]

    emulator.delete_object("pods", "p1", "default")
    emulator.delete_object("pods", "p2", "default")
    ticks.run()
    assert profiles(emulator, names) == ["performance", "performance"]
    status = json.loads(stack.run_cli("status", "--output", "json").stdout)
    assert status["damping"]["active_windows"] == ["always"]
    assert status["damping"]["frozen_by"] == "always"
    assert [n["held_by"] for n in status["nodes"]] == ["freeze", "freeze"]
    plan = json.loads(stack.run_cli("plan", "--output", "json").stdout)
    assert plan["active_windows"] == ["always"]
    assert {n["held_by"] for n in plan["nodes"]} == {"freeze"}


def test_an_invalid_schedule_file_stops_a_command_with_one_line(
    stack: Stack, tmp_path: Path
) -> None:
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text("windows:\n  - name: night\n    cron: '0 22 * *'\n    duration: 8h\n")
    stack.configure(schedule_file=str(schedule))
    result = stack.run_cli("status")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"joulie-tasks: invalid configuration: SCHEDULE_FILE='{schedule}': expected a valid "
        "schedule; window 'night', field 'cron': expected a five-field cron expression such "
        "as '0 8 * * 1-5', got '0 22 * *'"
    ]
