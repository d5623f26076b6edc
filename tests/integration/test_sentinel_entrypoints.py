"""Every entry point of joulie-tasks, started for real with a Sentinel REDIS_URL.

A Sentinel-managed Redis on loopback (tests/integration/sentinel_cluster.py), the API
emulator, and each process role as its own ``joulie-tasks`` process with
``REDIS_URL=sentinel://…`` and ``REDIS_SENTINEL_MASTER``: the worker, beat, the
watcher and the metrics server; then each operator command (``status``, ``history``,
``plan``, ``pause``, ``resume``, ``reconcile --once``). Issue 16 was one of them (watch)
building its Redis client without the master's name and crashing at start; this test
asserts each one does its job, not only that it starts:

- watch takes its lease, syncs the cache and keeps its heartbeat advancing;
- beat's ticks reach the worker, take the lock and complete, reading the cache;
- metrics serves the cache and tick figures it reads from the master;
- status shows that watcher and the last tick; history the transitions; plan the
  nodes; pause and resume flip the switch the ticks read; reconcile --once completes.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

import pytest

from joulie_tasks.adapters import clients, store
from joulie_testbed.emulator import Emulator
from joulie_testbed.procs import Stack, free_port, read_url, wait_for
from joulie_testbed.sentinel import SentinelCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

NODES = 6


@pytest.fixture
def sstack(sentinel_stack: Stack) -> Stack:
    sentinel_stack.configure(reconcile_interval="2s")
    return sentinel_stack


def _cli(stack: Stack, *args: str) -> str:
    done = stack.run_cli(*args)
    assert done.returncode == 0, f"joulie-tasks {' '.join(args)}: {done.stderr[-2000:]}"
    return done.stdout


def _cache_fed_ticks(state: store.RedisStore) -> list[dict[str, Any]]:
    """Finished ticks with no failure whose snapshot came from the watch cache."""
    fed = []
    for t in state.tick_summaries():
        try:
            mark = state.load_cache_mark(t.tick_id)
        except Exception:  # a tick that never reached its snapshot stage has no mark
            continue
        if mark.fed and not t.failures:
            fed.append(t)
    return fed


def _metrics(port: int) -> dict[str, float]:
    text = read_url(f"http://127.0.0.1:{port}/metrics", timeout=5).decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_every_process_and_command_runs_against_sentinel(
    sstack: Stack,
    sentinel_cluster: SentinelCluster,
    emulator: Emulator,
    sentinel_state: store.RedisStore,
) -> None:
    emulator.seed(NODES, 2, seed=16)
    metrics_port = free_port()
    sstack.configure(metrics_addr=f"127.0.0.1:{metrics_port}")
    assert sstack.env["REDIS_URL"].startswith("sentinel://")

    # Given each process role started with the Sentinel URL and the master's name
    worker = sstack.start_worker("w1")
    watch = sstack.start_proc("watch", ["watch"], ready="started")
    sstack.start_proc("metrics", ["metrics"], ready="metrics served at")
    beat = sstack.start_beat()

    # Then the watcher holds the lease, the cache is synced and its heartbeat advances
    cache = clients.cache(sentinel_state)
    wait_for(
        lambda: str(watch.proc.pid) in (cache.status().lease or ""), what="the watcher's lease"
    )
    wait_for(lambda: all(cache.status().synced.values()), what="a synced cache")
    beat_at = cache.status().heartbeat
    assert beat_at is not None
    wait_for(lambda: (cache.status().heartbeat or 0) > beat_at, what="the heartbeat to advance")

    # And beat's ticks complete on the worker, reading the watcher's cache
    wait_for(lambda: _cache_fed_ticks(sentinel_state), timeout=60, what="a cache-fed tick")
    managed = {
        n["metadata"]["name"]
        for n in emulator.list_objects("nodes")
        if n["metadata"].get("labels", {}).get("joulie.io/managed") == "true"
    }
    assert managed
    assert set(sentinel_state.fsm()) == managed

    # And the metrics server reads the same master
    def served() -> dict[str, float] | None:
        values = _metrics(metrics_port)
        return values if values.get("joulie_watch_active") == 1.0 else None

    values = wait_for(served, what="metrics with an active watcher")
    assert values["joulie_cache_synced"] == 1.0
    assert values['joulie_ticks_total{result="completed"}'] >= 1

    # When beat stops (so the commands below do not race its ticks for the lock)
    beat.stop()
    wait_for(lambda: sentinel_state.lock_holder() is None, what="the lock free")

    # Then each command works against the master the Sentinels name
    status = json.loads(_cli(sstack, "status", "--output", "json"))
    assert str(watch.proc.pid) in status["watcher"]["lease"]
    assert status["watcher"]["synced"] is True
    assert status["last_tick"] is not None
    assert {n["node"] for n in status["nodes"]} == managed

    # (from here the commands run with every node wanted in eco: writes and transitions)
    sstack.configure(static_hp_frac="0")
    plan = json.loads(_cli(sstack, "plan", "--output", "json"))
    assert {n["node"] for n in plan["nodes"]} == managed
    assert any(n["write_needed"] for n in plan["nodes"])

    assert "paused" in _cli(sstack, "pause")
    assert sentinel_state.is_paused()
    assert "resumed" in _cli(sstack, "resume")
    assert not sentinel_state.is_paused()

    def reconciled() -> dict[str, Any] | None:
        done = sstack.run_cli("reconcile", "--once", "--output", "json")
        if done.returncode == 3:  # a tick the watcher kicked holds the lock: try again
            return None
        assert done.returncode == 0, done.stderr[-2000:]
        return cast(dict[str, Any], json.loads(done.stdout))

    report = wait_for(reconciled, timeout=60, interval=0.5, what="reconcile --once")
    assert report["failures"] == {}
    assert {n["node"] for n in report["nodes"]} == managed
    assert report["written"] > 0
    # (a tick the watcher kicks on our writes may finish after it: look ours up by id)
    summaries = {s.tick_id: s for s in sentinel_state.tick_summaries()}
    assert report["tick_id"] in summaries
    assert summaries[report["tick_id"]].written == report["written"]

    history = json.loads(_cli(sstack, "history", "--output", "json"))
    mine = [e for e in history if e["tick_id"] == report["tick_id"]]
    assert mine, "history shows none of the transitions reconcile --once recorded"
    stream = sentinel_state.transitions()  # read after history: the stream only grows
    assert {e["id"] for e in history} <= {t.id for t in stream}
    assert {e["id"] for e in mine} == {t.id for t in stream if t.tick_id == report["tick_id"]}

    # And no process died on the way (a crash at start or later fails here)
    for proc in (worker, watch):
        proc.check()
    assert time.time() - (cache.status().heartbeat or 0) < 5
