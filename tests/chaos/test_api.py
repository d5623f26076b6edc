"""The API server misbehaving: a concurrent writer every 10 ms (409 storm), 429 with
Retry-After, 500/503 bursts, responses slower than the request timeout, dropped
connections, and the API down for three ticks then back.

Every case must converge within a bound number of ticks, count its retries, and
leave Redis agreeing with the cluster. The four injected-fault rows are one table
(``API_FAULTS``): a converging tick that retried at least ``min_retries`` times.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pytest

from joulie_tasks.ports import metrics
from joulie_testbed.emulator import Emulator, resources
from joulie_testbed.procs import wait_for
from tests.chaos.scenario import Chaos, Fault, Scenario

NODE_PATCH = r"^/api/v1/nodes/"
NPP_ITEM = r"^/apis/joulie.io/v1alpha1/nodepowerprofiles/"
NPP_COLLECTION = r"^/apis/joulie.io/v1alpha1/nodepowerprofiles$"


@dataclass(frozen=True)
class ApiFault:
    """A row whose faults are injected before the first tick, which must converge alone.
    ``behaviour`` may name the tick's own duration as ``{tick_s}``."""

    scenario: Scenario
    faults: tuple[Fault, ...]
    min_retries: int
    fault: str
    action: str
    behaviour: str
    min_tick_s: float = 0.0


API_FAULTS = {
    "429": ApiFault(
        Scenario(seed=42),
        (("PATCH", NODE_PATCH, {"status": 429, "retry_after": 1, "times": 3}),),
        min_retries=3,
        # the writes run in parallel: their 1 s waits overlap
        min_tick_s=1.0,
        fault="429 with Retry-After",
        action="three node PATCHes answered 429 with Retry-After: 1",
        behaviour="each retried no sooner than the server asked (1 s; tick took "
        "{tick_s:.1f} s); no write lost",
    ),
    "500-503": ApiFault(
        Scenario(seed=43),
        (
            ("GET", r"^/api/v1/pods$", {"status": 503, "times": 2}),
            ("PATCH", NODE_PATCH, {"status": 500, "times": 3}),
            ("POST", NPP_COLLECTION, {"status": 503, "times": 3}),
        ),
        min_retries=8,
        fault="500/503 bursts",
        action="pod LIST 503 x2, node PATCH 500 x3, profile POST 503 x3 in one tick",
        behaviour="every call retried with jittered backoff within its budget; tick completed",
    ),
    "slow": ApiFault(
        Scenario(seed=44, settings={"kube_request_timeout": "1s"}),
        (
            ("GET", r"^/api/v1/nodes$", {"delay_s": 2, "times": 2}),
            ("PATCH", NODE_PATCH, {"delay_s": 2, "times": 2}),
        ),
        min_retries=4,
        fault="responses slower than the request timeout",
        action="KUBE_REQUEST_TIMEOUT=1s; node LIST x2 and node PATCH x2 answered after 2 s",
        behaviour="each call timed out client-side and was retried (a late PATCH landing "
        "twice is harmless: merge patches are idempotent)",
    ),
    "dropped": ApiFault(
        Scenario(seed=45),
        (
            ("GET", r"^/apis/joulie.io/", {"drop": True, "times": 2}),
            ("PATCH", NODE_PATCH, {"drop": True, "times": 3}),
            ("POST", NPP_COLLECTION, {"drop": True, "times": 2}),
        ),
        min_retries=7,
        fault="dropped connections",
        action="connection closed without a response: profile LIST x2, node PATCH x3, "
        "profile POST x2",
        behaviour="retried as transient; a create that had landed answers 409 on retry and "
        "is re-read, not duplicated",
    ),
}


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


def test_conflict_storm_from_a_writer_every_10ms(chaos: Chaos, emulator: Emulator) -> None:
    # Given a converged cluster, then a new eco cap: every eco profile must be replaced
    drive = chaos.start(Scenario(seed=41, converged=True))
    chaos.worker.stop()
    chaos.stack.configure(eco_cap_watts="150")
    chaos.stack.start_worker("w2")
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
    found = chaos.problems()
    conflicts = int(chaos.ticks.counter(metrics.KUBE_CONFLICTS))
    chaos.row.fill(
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


@pytest.mark.parametrize("case", API_FAULTS.values(), ids=API_FAULTS.keys())
def test_an_api_fault_is_retried_and_the_first_tick_converges(chaos: Chaos, case: ApiFault) -> None:
    # Given a seeded cluster and the row's faults
    drive = chaos.start(case.scenario, *case.faults)

    # When ticks run
    n = drive.converge(max_ticks=2)

    # Then the first one converged, retrying each faulted call
    report = chaos.state.tick_summaries()[0].model_dump(mode="json")
    found = chaos.problems()
    chaos.row.fill(
        drive,
        found,
        fault=case.fault,
        action=case.action,
        behaviour=case.behaviour.format(tick_s=report["duration_s"]),
    )
    assert report["duration_s"] >= case.min_tick_s
    assert drive.retries()[0] >= case.min_retries
    assert n == 1
    assert found == []


def test_api_down_for_three_ticks_then_back(chaos: Chaos, emulator: Emulator) -> None:
    drive = chaos.start(Scenario(seed=46, converged=True))
    worker = chaos.worker
    emulator.mutate_node_labels("node-00000", {"joulie.io/draining": "true"})
    port = emulator.port

    # When the API server is down for three ticks
    emulator.stop()
    for _ in range(3):
        assert drive.one() == "failed"
        assert chaos.state.lock_holder() is None
    assert worker.alive

    # Then the first tick after it is back converges
    emulator.start(port=port)
    n = drive.converge(max_ticks=5)
    found = chaos.problems()
    chaos.row.fill(
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
