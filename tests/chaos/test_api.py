"""The API server misbehaving: a concurrent writer every 10 ms (409 storm), 429 with
Retry-After, 500/503 bursts, responses slower than the request timeout, dropped
connections, and the API down for three ticks then back.

Every case must converge within a bound number of ticks, count its retries, and
leave Redis agreeing with the cluster.
"""

from __future__ import annotations

import threading
from typing import Any

from joulie_tasks.adapters import metrics, store
from joulie_testbed.chaos import Driver, lost, problems
from joulie_testbed.emulator import Emulator, resources
from joulie_testbed.procs import Stack, wait_for
from joulie_testbed.ticks import TickClient
from tests.chaos.reliability import Row

NODE_PATCH = r"^/api/v1/nodes/"
NPP_ITEM = r"^/apis/joulie.io/v1alpha1/nodepowerprofiles/"
NPP_COLLECTION = r"^/apis/joulie.io/v1alpha1/nodepowerprofiles$"


def _fill(row: Row, drive: Driver, found: list[str], **cells: str) -> None:
    row.fault, row.action, row.behaviour = cells["fault"], cells["action"], cells["behaviour"]
    row.ticks, row.retries, row.lost = drive.ticks_text(), drive.retries()[1], lost(found)


class _ProfileChurn:
    """Rewrites annotations of profile objects every ``interval_s`` (atomically, keeping
    their spec), so each replace carrying an older resourceVersion meets a 409."""

    def __init__(self, emulator: Emulator, names: list[str], *, interval_s: float) -> None:
        self.writes = 0
        self._emulator, self._names, self._interval = emulator, names, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        res = resources.resolve("nodepowerprofiles")

        def bump(obj: dict[str, Any]) -> None:
            annotations = obj["metadata"].setdefault("annotations", {})
            annotations["chaos/churn"] = str(self.writes)

        while not self._stop.wait(self._interval):
            for name in self._names:
                self._emulator.store.mutate(res, None, name, bump)
                self.writes += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def test_conflict_storm_from_a_writer_every_10ms(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore, reliability: Row
) -> None:
    # Given a converged cluster, then a new eco cap: every eco profile must be replaced
    emulator.seed(6, 1, seed=41)
    first = stack.start_worker("w1")
    drive = Driver(ticks, state, emulator, stack.env)
    drive.converge(max_ticks=1)
    first.stop()
    stack.configure(eco_cap_watts="150")
    stack.start_worker("w2")
    drive.outcomes.clear()
    eco = [
        p["metadata"]["name"]
        for p in emulator.list_objects("nodepowerprofiles")
        if p["spec"]["profile"] == "eco"
    ]

    # When every 10 ms one writer changes a label of each eco node and another bumps
    # the resourceVersion of each eco profile
    nodes = [f"node-{name.removeprefix('node-')}" for name in eco]
    writers = [emulator.concurrent_writer(n, interval_ms=10) for n in nodes]
    churn = _ProfileChurn(emulator, eco, interval_s=0.01)
    try:
        n = drive.converge(max_ticks=3)
    finally:
        label_writes = sum(w.stop() for w in writers)
        churn.stop()
    found = problems(state, emulator, stack.env)
    conflicts = int(ticks.counter(metrics.KUBE_CONFLICTS))
    _fill(
        reliability,
        drive,
        found,
        fault="409 storm: concurrent writer every 10 ms",
        action=(
            f"label writer on {len(nodes)} nodes and resourceVersion churn on their profiles "
            f"every 10 ms ({label_writes + churn.writes} foreign writes) during a cap change"
        ),
        behaviour=(
            f"{conflicts} conflicts on profile replaces, each re-read, recomputed and "
            "re-applied; label merge patches carry no resourceVersion, so label churn "
            "never conflicts"
        ),
    )
    assert conflicts > 0
    assert n <= 3
    assert found == []


def test_throttled_with_429_and_retry_after(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore, reliability: Row
) -> None:
    emulator.seed(6, 1, seed=42)
    stack.start_worker("w1")
    emulator.inject("PATCH", NODE_PATCH, status=429, retry_after=1, times=3)
    drive = Driver(ticks, state, emulator, stack.env)

    n = drive.converge(max_ticks=2)
    report = state.recent_ticks()[0]
    found = problems(state, emulator, stack.env)
    _fill(
        reliability,
        drive,
        found,
        fault="429 with Retry-After",
        action="three node PATCHes answered 429 with Retry-After: 1",
        behaviour=(
            "each retried no sooner than the server asked (1 s; tick took "
            f"{report['duration_s']:.1f} s); no write lost"
        ),
    )
    assert report["duration_s"] >= 1.0  # the writes run in parallel: their 1 s waits overlap
    assert drive.retries()[0] >= 3
    assert n == 1
    assert found == []


def test_500_and_503_bursts(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore, reliability: Row
) -> None:
    emulator.seed(6, 1, seed=43)
    stack.start_worker("w1")
    emulator.inject("GET", r"^/api/v1/pods$", status=503, times=2)
    emulator.inject("PATCH", NODE_PATCH, status=500, times=3)
    emulator.inject("POST", NPP_COLLECTION, status=503, times=3)
    drive = Driver(ticks, state, emulator, stack.env)

    n = drive.converge(max_ticks=2)
    found = problems(state, emulator, stack.env)
    _fill(
        reliability,
        drive,
        found,
        fault="500/503 bursts",
        action="pod LIST 503 x2, node PATCH 500 x3, profile POST 503 x3 in one tick",
        behaviour="every call retried with jittered backoff within its budget; tick completed",
    )
    assert drive.retries()[0] >= 8
    assert n == 1
    assert found == []


def test_responses_slower_than_the_request_timeout(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore, reliability: Row
) -> None:
    stack.configure(kube_request_timeout="1s")
    emulator.seed(6, 1, seed=44)
    stack.start_worker("w1")
    emulator.inject("GET", r"^/api/v1/nodes$", delay_s=2, times=2)
    emulator.inject("PATCH", NODE_PATCH, delay_s=2, times=2)
    drive = Driver(ticks, state, emulator, stack.env)

    n = drive.converge(max_ticks=2)
    found = problems(state, emulator, stack.env)
    _fill(
        reliability,
        drive,
        found,
        fault="responses slower than the request timeout",
        action="KUBE_REQUEST_TIMEOUT=1s; node LIST x2 and node PATCH x2 answered after 2 s",
        behaviour=(
            "each call timed out client-side and was retried (a late PATCH landing twice "
            "is harmless: merge patches are idempotent)"
        ),
    )
    assert drive.retries()[0] >= 4
    assert n == 1
    assert found == []


def test_dropped_connections(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore, reliability: Row
) -> None:
    emulator.seed(6, 1, seed=45)
    stack.start_worker("w1")
    emulator.inject("GET", r"^/apis/joulie.io/", drop=True, times=2)
    emulator.inject("PATCH", NODE_PATCH, drop=True, times=3)
    emulator.inject("POST", NPP_COLLECTION, drop=True, times=2)
    drive = Driver(ticks, state, emulator, stack.env)

    n = drive.converge(max_ticks=2)
    found = problems(state, emulator, stack.env)
    _fill(
        reliability,
        drive,
        found,
        fault="dropped connections",
        action="connection closed without a response: profile LIST x2, node PATCH x3, "
        "profile POST x2",
        behaviour="retried as transient; a create that had landed answers 409 on retry and "
        "is re-read, not duplicated",
    )
    assert drive.retries()[0] >= 7
    assert n == 1
    assert found == []


def test_api_down_for_three_ticks_then_back(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore, reliability: Row
) -> None:
    emulator.seed(6, 1, seed=46)
    worker = stack.start_worker("w1")
    drive = Driver(ticks, state, emulator, stack.env)
    drive.converge(max_ticks=1)
    drive.outcomes.clear()
    emulator.mutate_node_labels("node-00000", {"joulie.io/draining": "true"})
    port = emulator.port

    # When the API server is down for three ticks
    emulator.stop()
    for _ in range(3):
        assert drive.one() == "failed"
        assert state.lock_holder() is None
    assert worker.alive

    # Then the first tick after it is back converges
    emulator.start(port=port)
    n = drive.converge(max_ticks=5)
    found = problems(state, emulator, stack.env)
    _fill(
        reliability,
        drive,
        found,
        fault="API down for three intervals then back",
        action="API server stopped (connection refused) for three ticks, then restarted",
        behaviour=(
            "each tick's node LIST failed after its retry budget: tick counted failed, lock "
            "released at once, worker stayed up; first tick after recovery converged"
        ),
    )
    wait_for(lambda: worker.alive, what="worker alive")
    assert n == 4
    assert found == []
