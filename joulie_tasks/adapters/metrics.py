"""Metrics (docs/SPEC.md §8) that are right whichever worker process did the work.

Workers never keep metric values in their own memory: they add increments to a
Redis hash (store.add_counters), and the metrics process builds every family at
scrape time from Redis (counters, histogram buckets, gauges) and from the FSM
(node state and profile gauges). The SPEC names and labels are kept verbatim.

Counters and histograms whose label values are known in advance are exported at 0
from start-up (SPEC §8.4): the collector is given those series (``known``, built by
workflow/known_series.py from the vocabularies the code counts with) and lays the
values read from Redis over them. A series born at 1 on its first increment leaves
``increase()`` at 0 over it, so an alert on the first failure would never fire.
Redis holds only real increments; the zeros exist at scrape time only.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from joulie_tasks.core import models

logger = logging.getLogger(__name__)

NODE_STATE = "joulie_operator_node_state"
NODE_PROFILE_LABEL = "joulie_operator_node_profile_label"
STATE_TRANSITIONS = "joulie_operator_state_transitions_total"
TICKS = "joulie_ticks_total"
TICK_DURATION = "joulie_tick_duration_seconds"
KUBE_REQUESTS = "joulie_kube_requests_total"
KUBE_RETRIES = "joulie_kube_retries_total"
KUBE_CONFLICTS = "joulie_kube_conflicts_total"
WRITES = "joulie_writes_total"
WRITE_FAILURES = "joulie_write_failures_total"
LEADER_CHANGES = "joulie_leader_changes_total"
POLICY_FALLBACKS = "joulie_policy_fallback_total"
PAUSED = "joulie_paused"
LAST_TICK = "joulie_last_tick_timestamp_seconds"
MANAGED_NODES = "joulie_managed_nodes"
RECONCILE_INTERVAL = "joulie_reconcile_interval_seconds"
#: Profile changes withheld by damping, by ``reason`` (dwell, budget, freeze); counted
#: once per hold, when it starts (docs/SPEC.md §12.4).
TRANSITIONS_HELD = "joulie_transitions_held_total"

#: The ``stage`` of a whole tick, start to end (the other stages are the chain's).
TOTAL_STAGE = "total"

DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

_HELP = {
    STATE_TRANSITIONS: "Node state transitions, applied or deferred",
    TICKS: "Reconcile ticks by result",
    KUBE_REQUESTS: "Kubernetes API requests by verb, resource and outcome (HTTP status)",
    KUBE_RETRIES: "Retried Kubernetes API operations by reason",
    KUBE_CONFLICTS: "409 Conflict answers from the Kubernetes API",
    WRITES: "Kubernetes writes performed by kind",
    WRITE_FAILURES: "Node writes that failed after retries",
    LEADER_CHANGES: "Times the tick lock was taken by a different process than before",
    POLICY_FALLBACKS: "Ticks planned with static_partition because POLICY_TYPE was unknown",
    TRANSITIONS_HELD: "Profile changes withheld by damping (dwell, budget, freeze), per hold",
}
_STATES = (
    models.NodeState.ACTIVE_PERFORMANCE,
    models.NodeState.DRAINING_PERFORMANCE,
    models.NodeState.ACTIVE_ECO,
)
_SEP = "\x1f"


def field(name: str, **labels: str) -> str:
    """Encode one series as a Redis hash field: name, separator, sorted JSON labels."""
    return name + _SEP + json.dumps(labels, sort_keys=True, separators=(",", ":"))


class Values:
    """Metric values by series name and labels, so no caller builds a field string:
    ``add`` sums (counters), ``set`` replaces (gauges); ``as_dict()`` is what
    ``StateStore.add_counters`` / ``set_gauges`` take."""

    def __init__(self) -> None:
        self._by_field: dict[str, float] = {}

    def add(self, name: str, amount: float = 1.0, **labels: str) -> Values:
        key = field(name, **labels)
        self._by_field[key] = self._by_field.get(key, 0.0) + float(amount)
        return self

    def set(self, name: str, value: float, **labels: str) -> Values:
        self._by_field[field(name, **labels)] = float(value)
        return self

    def as_dict(self) -> dict[str, float]:
        return dict(self._by_field)


def tick_counted(result: models.TickResult) -> dict[str, float]:
    """The counter increment for one tick that ended with ``result``."""
    return {field(TICKS, result=result.value): 1.0}


def parse_field(text: str) -> tuple[str, dict[str, str]]:
    name, _, labels = text.partition(_SEP)
    return name, json.loads(labels) if labels else {}


#: Histograms other than the tick duration: name → bucket bounds (label-free).
EXTRA_HISTOGRAMS: dict[str, tuple[float, ...]] = {
    "joulie_reaction_latency_seconds": (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0)
}


def histogram_increments(name: str, seconds: float, buckets: tuple[float, ...]) -> dict[str, float]:
    """Increments for one observation of a label-free histogram (see EXTRA_HISTOGRAMS)."""
    out = {field(name + "_sum"): seconds, field(name + "_count"): 1.0}
    for bound in buckets:
        if seconds <= bound:
            out[field(name + "_bucket", le=repr(bound))] = 1.0
    return out


def duration_increments(stage: str, seconds: float) -> dict[str, float]:
    """Histogram increments for one observation (cumulative buckets, sum, count)."""
    out = {field(TICK_DURATION + "_sum", stage=stage): seconds}
    out[field(TICK_DURATION + "_count", stage=stage)] = 1
    for bound in DURATION_BUCKETS:
        if seconds <= bound:
            out[field(TICK_DURATION + "_bucket", stage=stage, le=repr(bound))] = 1
    return out


def zero_histogram(name: str, buckets: tuple[float, ...], **labels: str) -> dict[str, float]:
    """The series of one histogram (every bucket, sum, count) at 0, as Redis fields."""
    out = {field(name + "_sum", **labels): 0.0, field(name + "_count", **labels): 0.0}
    for bound in buckets:
        out[field(name + "_bucket", **labels, le=repr(bound))] = 0.0
    return out


class RedisCollector(Collector):
    """Builds every family at scrape time from the values workers left in Redis, over
    the ``known`` counter and histogram series at 0."""

    def __init__(self, read: Any, *, known: Mapping[str, float] | None = None) -> None:
        #: ``read()`` returns (counters, gauges, fsm records, paused); injectable for tests.
        self._read = read
        self._known = dict.fromkeys(known or {}, 0.0)

    def collect(self) -> Iterator[Metric]:
        try:
            counters, gauges, fsm, is_paused = self._read()
        except Exception as e:  # a scrape must answer even when Redis is away
            logger.warning("metrics: cannot read Redis: %s", e)
            up = GaugeMetricFamily("joulie_redis_up", "1 when the metrics process reads Redis")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("joulie_redis_up", "1 when the metrics process reads Redis")
        up.add_metric([], 1)
        yield up
        yield from _node_families(fsm)
        paused = GaugeMetricFamily(PAUSED, "1 while the operator is paused (writes nothing)")
        paused.add_metric([], 1.0 if is_paused else 0.0)
        yield paused
        # Redis answered: every known series is shown, at 0 until it is first incremented.
        counters = {**self._known, **counters}
        yield from _counter_families(counters)
        yield from _histogram_families(counters)
        yield from _extra_histograms(counters)
        yield from _gauge_families(gauges)


def _node_families(fsm: Mapping[str, models.FsmRecord]) -> Iterable[Metric]:
    state = GaugeMetricFamily(
        NODE_STATE, "1 for the node's current state", labels=["node", "state"]
    )
    profile = GaugeMetricFamily(
        NODE_PROFILE_LABEL, "1 for the node's applied profile", labels=["node", "profile"]
    )
    for node in sorted(fsm):
        record = fsm[node]
        for s in _STATES:
            state.add_metric([node, s.value], 1.0 if record.state == s else 0.0)
        for p in models.Profile:
            profile.add_metric([node, p.value], 1.0 if record.profile == p else 0.0)
    managed = GaugeMetricFamily(MANAGED_NODES, "Nodes in the FSM (managed)")
    managed.add_metric([], len(fsm))
    return [state, profile, managed]


def _counter_families(counters: Mapping[str, float]) -> Iterable[Metric]:
    series: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for key, value in counters.items():
        name, labels = parse_field(key)
        if name.startswith(TICK_DURATION) or name.rsplit("_", 1)[0] in EXTRA_HISTOGRAMS:
            continue
        series[name].append((labels, value))
    for name in sorted(series):
        rows = series[name]
        label_names = sorted({k for labels, _ in rows for k in labels})
        family = CounterMetricFamily(
            name.removesuffix("_total"), _HELP.get(name, name), labels=label_names
        )
        for labels, value in sorted(rows, key=lambda r: sorted(r[0].items())):
            family.add_metric([labels.get(k, "") for k in label_names], value)
        yield family


def _histogram_families(counters: Mapping[str, float]) -> Iterable[Metric]:
    stages: dict[str, dict[str, Any]] = defaultdict(lambda: {"buckets": {}, "sum": 0.0})
    for key, value in counters.items():
        name, labels = parse_field(key)
        if name == TICK_DURATION + "_bucket":
            stages[labels["stage"]]["buckets"][float(labels["le"])] = value
        elif name == TICK_DURATION + "_sum":
            stages[labels["stage"]]["sum"] = value
        elif name == TICK_DURATION + "_count":
            stages[labels["stage"]]["count"] = value
    if not stages:
        return
    family = HistogramMetricFamily(
        TICK_DURATION, "Tick duration by stage (total: tick start to end)", labels=["stage"]
    )
    for stage in sorted(stages):
        data = stages[stage]
        buckets = [(repr(b), data["buckets"].get(b, 0.0)) for b in DURATION_BUCKETS]
        buckets.append(("+Inf", data.get("count", 0.0)))
        family.add_metric([stage], buckets, data["sum"])
    yield family


def _gauge_families(gauges: Mapping[str, float]) -> Iterable[Metric]:
    series: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for key, value in gauges.items():
        name, labels = parse_field(key)
        series[name].append((labels, value))
    for name in sorted(series):
        rows = series[name]
        label_names = sorted({k for labels, _ in rows for k in labels})
        family = GaugeMetricFamily(name, name, labels=label_names)
        for labels, value in rows:
            family.add_metric([labels.get(k, "") for k in label_names], value)
        yield family


def _extra_histograms(counters: Mapping[str, float]) -> Iterable[Metric]:
    for name, bounds in EXTRA_HISTOGRAMS.items():
        count = counters.get(field(name + "_count"))
        if count is None:
            continue
        buckets = [
            (repr(b), counters.get(field(name + "_bucket", le=repr(b)), 0.0)) for b in bounds
        ]
        buckets.append(("+Inf", count))
        family = HistogramMetricFamily(name, name.replace("_", " "))
        family.add_metric([], buckets, counters.get(field(name + "_sum"), 0.0))
        yield family
