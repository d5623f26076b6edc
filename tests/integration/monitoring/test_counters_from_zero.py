"""Counters from zero (docs/SPEC.md §8.4), with the real Prometheus tools.

Covers:
- promtool: after a fresh start, one failed write fires JoulieWritesFailing when the
  counter starts at 0 and never when the series is born at 1; failing ticks fire
  JoulieTicksFailing one reconcile interval earlier from 0
  (monitoring/counters-from-zero.rules.test.yaml);
- a real Prometheus scraping a fresh ``joulie-tasks metrics`` over an empty Redis has a
  series for every metric the dashboard and the alert rules query, except the few that
  cannot exist before a tick (listed below, and asserted absent so the list stays
  true); the first increment of a counter then shows in ``increase()``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from joulie_tasks.adapters import store
from joulie_tasks.ports import metrics
from joulie_testbed.procs import Stack, free_port, wait_for
from tests.deploy import chart, helpers
from tests.integration.monitoring.prometheus import Prometheus
from tests.integration.monitoring.tools import promtool

ZERO_TESTS = helpers.ROOT / "monitoring" / "counters-from-zero.rules.test.yaml"
JOB = "joulie-tasks-metrics"

#: Queried metrics that a fresh start cannot have, and why (docs/SPEC.md §8.4).
NOT_BEFORE_A_TICK = {
    "joulie_operator_node_state": "one series per node in the state record: none yet",
    "joulie_operator_node_profile_label": "one series per node in the state record: none yet",
    "joulie_operator_state_transitions_total": "labelled by node: none known in advance",
    "joulie_last_tick_timestamp_seconds": "no tick has finished; 0 would claim one in 1970",
}

_PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: strings, label matchers, ranges,
    grouping clauses and function calls removed, what is left that looks like a name."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*(?!\s*\()\b", text))
    return {n for n in names if n.lower() not in _PROMQL_WORDS and not re.fullmatch(r"e\d*", n)}


def _rule_exprs() -> list[str]:
    groups = yaml.safe_load(chart.RULES_FILE.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def queried_metrics() -> set[str]:
    exprs = [chart.concrete(e) for _, e in chart.dashboard_exprs()] + _rule_exprs()
    return {name for expr in exprs for name in metric_names(expr)}


def test_metric_names_are_parsed_out_of_promql() -> None:
    expr = (
        'sum by (verb, resource) (rate(joulie_kube_requests_total{outcome!~"2.."}[1m])) '
        '/ on(job) group_left max(up{job="x"} or absent(joulie_redis_up)) > 1e3 * foo:bar'
    )
    assert metric_names(expr) == {"joulie_kube_requests_total", "up", "joulie_redis_up", "foo:bar"}
    assert {"joulie_write_failures_total", "joulie_tick_duration_seconds_bucket", "up"} <= (
        queried_metrics()
    )


def test_a_first_failure_fires_only_on_a_counter_that_started_at_zero() -> None:
    tests = yaml.safe_load(ZERO_TESTS.read_text())
    assert tests["rule_files"] == [chart.RULES_FILE.name]
    done = promtool("test", "rules", ZERO_TESTS.name, cwd=ZERO_TESTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.fixture
def fresh(stack: Stack, tmp_path: Path) -> Iterator[Prometheus]:
    """A fresh ``joulie-tasks metrics`` over an empty Redis (no worker, no tick), scraped
    every second by a real Prometheus loaded with the shipped alert rules."""
    port = free_port()
    stack.configure(metrics_addr=f"127.0.0.1:{port}", reconcile_interval="30s")
    stack.start_proc("metrics", ["metrics"], ready="metrics served at")
    prometheus = Prometheus(
        tmp_path / "prometheus",
        targets={JOB: f"127.0.0.1:{port}"},
        rules=yaml.safe_load(chart.RULES_FILE.read_text()),
    )
    try:
        prometheus.start()
        yield prometheus
    finally:
        prometheus.stop()


def _present(prometheus: Prometheus, name: str) -> bool:
    # The series API, not an instant query: a scrape that times out on a loaded machine
    # marks every series stale, and an instant query then finds none of them.
    return bool(prometheus.api("series", **{"match[]": f'{{__name__="{name}",job="{JOB}"}}'}))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_every_queried_metric_exists_from_start_up(fresh: Prometheus, stack: Stack) -> None:
    prometheus = fresh
    # Given the first scrape is in (every family comes in the same scrape)
    wait_for(
        lambda: prometheus.query(f'joulie_redis_up{{job="{JOB}"}} == 1'),
        timeout=30,
        interval=0.2,
        what="the first scrape of the metrics process",
    )
    # Then every metric the dashboard and the rules query has a series, but those that
    # need a tick
    queried = queried_metrics()
    assert set(NOT_BEFORE_A_TICK) <= queried, "a listed exception is no longer queried"
    missing = {name for name in sorted(queried) if not _present(prometheus, name)}
    assert missing == set(NOT_BEFORE_A_TICK)
    failures = prometheus.query(f'max_over_time(joulie_write_failures_total{{job="{JOB}"}}[5m])')
    assert [r["value"][1] for r in failures] == ["0"]

    # When the first node write fails (a worker adds its increment to Redis)
    state = store.RedisStore(stack.redis.url)
    try:
        state.add_counters(metrics.Values().add(metrics.WRITE_FAILURES).as_dict())
    finally:
        state.close()
    # Then increase() sees it: the JoulieWritesFailing expression has a result
    wait_for(
        lambda: prometheus.query(f'increase(joulie_write_failures_total{{job="{JOB}"}}[1m]) > 0'),
        timeout=30,
        interval=0.2,
        what="increase() of the first write failure",
    )
