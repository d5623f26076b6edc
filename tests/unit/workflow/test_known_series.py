"""The series exported at 0 from start-up (workflow/known_series.py, docs/SPEC.md §8.4).

Covers:
- the collector shows every known series at 0 over an empty Redis, lays the values
  read from Redis over them, and shows none of them when Redis cannot be read;
- ticks that complete, fail writes (a 409 retried, a 422 for good) and fail outright
  count only series that were declared, apart from the documented open-ended labels;
- the API requests declared are exactly the ones the source makes (the RBAC scan);
- no metric increment in the package names a label value as a string literal: every
  value comes from a vocabulary (enum or constant) that known_series.py iterates.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from joulie_tasks import config, errors
from joulie_tasks.adapters import exporter
from joulie_tasks.core import cache, models
from joulie_tasks.ports import cluster, metrics
from joulie_tasks.workflow import known_series, reconcile, runner, watcher
from tests.deploy import rbac_scan
from tests.fakes import FakeKube, MemoryStateStore

PACKAGE = Path(__file__).resolve().parents[3] / "joulie_tasks"
TICK_TIME = 1_700_000_000.0
SETTINGS = config.read_settings({"POLICY_TYPE": "static_partition", "STATIC_HP_FRAC": "0"})
#: Labels whose values are not known in advance (docs/SPEC.md §8.4).
OPEN_LABELS = {"node"}


def _scrape(read: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(exporter.RedisCollector(read, known=known_series.known_series()))
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _sample(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def test_an_empty_redis_shows_every_known_counter_and_histogram_at_zero() -> None:
    samples = _scrape(lambda: ({}, {}, {}, False))
    assert samples[_sample(metrics.WRITE_FAILURES)] == 0
    assert samples[_sample(metrics.KUBE_CONFLICTS)] == 0
    assert samples[_sample(metrics.LEADER_CHANGES)] == 0
    for result in models.TickResult:
        assert samples[_sample(metrics.TICKS, result=result.value)] == 0
    for reason in models.RetryReason:
        assert samples[_sample(metrics.KUBE_RETRIES, reason=reason.value)] == 0
    for stage in (*reconcile.STAGES, "total"):
        assert samples[_sample(metrics.TICK_DURATION + "_count", stage=stage)] == 0
        assert samples[_sample(metrics.TICK_DURATION + "_bucket", stage=stage, le="+Inf")] == 0
        assert samples[_sample(metrics.TICK_DURATION + "_bucket", stage=stage, le="0.01")] == 0
    for verb, resource in cluster.COUNTED_REQUESTS:
        key = _sample(metrics.KUBE_REQUESTS, verb=verb, resource=resource.plural, outcome="error")
        assert samples[key] == 0
    assert samples[_sample("joulie_reaction_latency_seconds_count")] == 0
    assert not any(name == metrics.STATE_TRANSITIONS for name, _ in samples)


def test_values_from_redis_replace_the_zeros() -> None:
    counters = {
        metrics.field(metrics.WRITE_FAILURES): 2.0,
        metrics.field(metrics.TICKS, result="failed"): 3.0,
        **metrics.duration_increments("plan", 0.2),
    }
    samples = _scrape(lambda: (counters, {}, {}, False))
    assert samples[_sample(metrics.WRITE_FAILURES)] == 2
    assert samples[_sample(metrics.TICKS, result="failed")] == 3
    assert samples[_sample(metrics.TICKS, result="completed")] == 0
    assert samples[_sample(metrics.TICK_DURATION + "_count", stage="plan")] == 1
    assert samples[_sample(metrics.TICK_DURATION + "_bucket", stage="plan", le="0.1")] == 0
    assert samples[_sample(metrics.TICK_DURATION + "_bucket", stage="plan", le="0.25")] == 1
    assert samples[_sample(metrics.TICK_DURATION + "_count", stage="guard")] == 0


def test_no_zero_is_shown_while_redis_cannot_be_read() -> None:
    def unreachable() -> Any:
        raise ConnectionError("redis away")

    assert _scrape(unreachable) == {_sample("joulie_redis_up"): 0}


def _undeclared(counters: dict[str, float]) -> set[str]:
    known = known_series.known_series()
    out = set()
    for key in counters:
        _, labels = metrics.parse_field(key)
        if key not in known and not OPEN_LABELS & set(labels):
            out.add(key)
    return out


def test_ticks_that_complete_fail_writes_and_fail_count_only_declared_series() -> None:
    # Given three nodes; the first label patch answers 409 (retried), a profile create
    # 422 (a node write that fails for good)
    fake, state = FakeKube(), MemoryStateStore()
    for name in ("n1", "n2", "n3"):
        fake.add("nodes", {"metadata": {"name": name, "labels": {"joulie.io/managed": "true"}}})
    fake.fail("patch", "nodes", errors.KubeConflict("409", status=409))
    fake.fail("create", "nodepowerprofiles", errors.KubeFatal("422", status=422))
    # When one tick runs, a second finds the lock held, and a third fails to list
    runner.run_inline(gateway=fake, state=state, cache=None, settings=SETTINGS, tick_time=TICK_TIME)
    fake.fail("list", "nodes", errors.KubeFatal("403", status=403))
    with pytest.raises(errors.KubeError):
        runner.run_inline(
            gateway=fake, state=state, cache=None, settings=SETTINGS, tick_time=TICK_TIME + 60
        )
    # Then it counted retries, failures and results, all of them declared in advance
    assert state.counters[metrics.field(metrics.KUBE_RETRIES, reason="conflict")] >= 1
    assert state.counters[metrics.field(metrics.WRITE_FAILURES)] == 1
    assert state.counters[metrics.field(metrics.TICKS, result="failed_writes")] == 1
    assert state.counters[metrics.field(metrics.TICKS, result="failed")] == 1
    assert _undeclared(state.counters) == set()


def test_the_declared_api_requests_are_the_requests_the_source_makes() -> None:
    constants = {n: v for n, v in vars(cluster).items() if isinstance(v, cluster.Resource)}
    kube_source, others = rbac_scan.sources(PACKAGE)
    uses = rbac_scan.scan(kube_source, others, constants).uses
    # Watch streams are the watcher's; it does not flush its request counts.
    made = {(verb, constants[c].plural) for c, verb in uses if verb != "watch"}
    declared = {(verb, resource.plural) for verb, resource in cluster.COUNTED_REQUESTS}
    assert declared == made


#: Calls that name one series' labels: Values.add/set, the watcher's counts.add, field().
_LABELLING_CALLS = {"add", "set", "field", "zero_histogram"}


def _literal_labels(tree: ast.AST) -> list[str]:
    found = []
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call):
            continue
        name = getattr(call.func, "attr", getattr(call.func, "id", None))
        if name in _LABELLING_CALLS:
            found += [
                f"{kw.arg}={kw.value.value!r} (line {call.lineno})"
                for kw in call.keywords
                if isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str)
            ]
        elif name == "duration_increments" and isinstance(call.args[0], ast.Constant):
            found.append(f"stage={call.args[0].value!r} (line {call.lineno})")
    return found


def test_no_metric_increment_names_a_label_value_that_is_not_declared() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): found
        for path in sorted(PACKAGE.rglob("*.py"))
        if (found := _literal_labels(ast.parse(path.read_text())))
    }
    assert offenders == {}, "take label values from a vocabulary known_series.py iterates"


def test_the_literal_label_check_finds_a_literal() -> None:
    source = 'counts.add(KICKS, result="bounced")\nmetrics.duration_increments("lint", 1.0)'
    assert _literal_labels(ast.parse(source)) == [
        "result='bounced' (line 1)",
        "stage='lint' (line 2)",
    ]


def test_the_watcher_and_cache_vocabularies_are_declared() -> None:
    known = known_series.known_series()
    for kick in watcher.KickResult:
        assert metrics.field(metrics.KICKS, result=kick.value) in known
    for reason in cache.Unusable:
        assert metrics.field("joulie_cache_fallbacks_total", reason=reason.value) in known
    for name in watcher.RESOURCES:
        for relist in watcher.RelistReason:
            key = metrics.field(metrics.WATCH_RELISTS, resource=name, reason=relist.value)
            assert key in known
