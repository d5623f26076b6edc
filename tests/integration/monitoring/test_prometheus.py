"""End to end with the real tools: a real Prometheus scrapes a real ``joulie-tasks
metrics`` while a real beat and two real workers reconcile the API emulator every 2 s.
Every dashboard query returns data; when the API fails, the ticks-failing alert of the
chart becomes pending, then firing, in Prometheus's own ``/api/v1/alerts``.

The shipped JoulieTicksFailing looks at 10m and waits 5m; the test renders the chart's
rules with ``alerts.ticksFailing.window=20s`` and ``for=2s`` (chart values), the same
expression otherwise, so the test lasts about a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from joulie_testbed.emulator import Emulator
from joulie_testbed.procs import Stack, free_port, wait_for
from tests.deploy import chart
from tests.integration.monitoring.prometheus import Prometheus

JOB = "joulie-tasks-metrics"  # the chart's default alerts.job for release joulie-tasks
TEST_RULE_VALUES = {"alerts": {"ticksFailing": {"window": "20s", "for": "2s"}}}


@pytest.fixture
def running(stack: Stack, emulator: Emulator, tmp_path: Path) -> Iterator[Prometheus]:
    emulator.seed(8, 3, seed=11)
    # The first tick labels every node: one PATCH answers 409 (a conflict, retried) and
    # one 422 (a write that fails for good), so those panels have data too.
    emulator.inject("PATCH", r"^/api/v1/nodes/", status=409, times=1)
    emulator.inject("PATCH", r"^/api/v1/nodes/", status=422, times=1)
    metrics_port = free_port()
    stack.configure(reconcile_interval="2s", metrics_addr=f"127.0.0.1:{metrics_port}")
    prometheus = Prometheus(
        tmp_path / "prometheus",
        targets={JOB: f"127.0.0.1:{metrics_port}"},
        rules=chart.alert_groups(TEST_RULE_VALUES),
    )
    try:
        stack.start_proc("metrics", ["metrics"], ready="metrics served at")
        workers = [stack.start_worker(n, wait_ready=False) for n in ("w1", "w2")]
        for worker in workers:
            worker.wait_for_log("ready.", timeout=90)
        stack.start_beat()
        prometheus.start()
        yield prometheus
    finally:
        prometheus.stop()


def _has_data(prometheus: Prometheus, expr: str) -> bool:
    return bool(prometheus.query(chart.concrete(expr, rate_interval="20s")))


def _alert_states(prometheus: Prometheus, name: str) -> set[str]:
    return {a["state"] for a in prometheus.alerts() if a["labels"]["alertname"] == name}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_dashboard_queries_return_data_and_ticks_failing_alert_fires(
    running: Prometheus, emulator: Emulator
) -> None:
    prometheus = running
    wait_for(lambda: prometheus.target_health() == {JOB: "up"}, timeout=30, what="scrape up")
    wait_for(
        lambda: prometheus.query('joulie_ticks_total{result="completed"} >= 3'),
        timeout=60,
        interval=0.5,
        what="three completed ticks seen by Prometheus",
    )
    # Every panel (and the node variable) answers on a running stack.
    missing = [title for title, expr in chart.dashboard_exprs()]
    for title, expr in chart.dashboard_exprs():
        wait_for(
            lambda expr=expr: _has_data(prometheus, expr),
            timeout=30,
            interval=0.5,
            what=f"data for panel {title!r}: {expr}",
        )
        missing.remove(title)
    assert missing == []
    nodes = {r["metric"]["node"] for r in prometheus.query("joulie_operator_node_state")}
    assert nodes == {n["metadata"]["name"] for n in emulator.list_objects("nodes")}
    assert _alert_states(prometheus, "JoulieTicksFailing") == set()

    # The API fails every node list from now on: ticks fail, the alert goes pending
    # (ratio above one half in the window), then firing.
    emulator.inject("GET", r"^/api/v1/nodes$", status=500, times=-1)
    seen: set[str] = set()

    def firing() -> bool:
        seen.update(_alert_states(prometheus, "JoulieTicksFailing"))
        return "firing" in seen

    wait_for(firing, timeout=90, interval=0.25, what="JoulieTicksFailing firing")
    assert seen <= {"pending", "firing"}
    failing = next(
        a for a in prometheus.alerts() if a["labels"]["alertname"] == "JoulieTicksFailing"
    )
    assert failing["labels"]["job"] == JOB
    assert failing["labels"]["severity"] == "warning"
    assert failing["annotations"]["runbook_url"].endswith("#joulieticksfailing")
    assert float(failing["value"]) > 0.5
