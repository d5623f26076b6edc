"""The Prometheus exporter (docs/SPEC.md §8): metrics right whichever worker did the work.

Workers never keep metric values in their own memory: they add increments to a
Redis hash (``MetricsSink.add_counters``; names and fields in ports/metrics.py), and
the metrics process builds every family here at scrape time from Redis (counters,
histogram buckets, gauges) and from the FSM (node state and profile gauges). The
only module that imports ``prometheus_client``.

Counters and histograms whose label values are known in advance are exported at 0
from start-up (SPEC §8.4): the collector is given those series (``known``, built by
workflow/known_series.py from the vocabularies the code counts with) and lays the
values read from Redis over them. A series born at 1 on its first increment leaves
``increase()`` at 0 over it, so an alert on the first failure would never fire.
Redis holds only real increments; the zeros exist at scrape time only.
"""

from __future__ import annotations

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
from joulie_tasks.ports import metrics

logger = logging.getLogger(__name__)

_HELP = {
    metrics.STATE_TRANSITIONS: "Node state transitions, applied or deferred",
    metrics.TICKS: "Reconcile ticks by result",
    metrics.KUBE_REQUESTS: "Kubernetes API requests by verb, resource and outcome (HTTP status)",
    metrics.KUBE_RETRIES: "Retried Kubernetes API operations by reason",
    metrics.KUBE_CONFLICTS: "409 Conflict answers from the Kubernetes API",
    metrics.WRITES: "Kubernetes writes performed by kind",
    metrics.WRITE_FAILURES: "Node writes that failed after retries",
    metrics.LEADER_CHANGES: "Times the tick lock was taken by a different process than before",
    metrics.POLICY_FALLBACKS: "Ticks planned with static_partition because POLICY_TYPE was unknown",
    metrics.TRANSITIONS_HELD: (
        "Profile changes withheld by damping (dwell, budget, freeze), per hold"
    ),
}
_STATES = (
    models.NodeState.ACTIVE_PERFORMANCE,
    models.NodeState.DRAINING_PERFORMANCE,
    models.NodeState.ACTIVE_ECO,
)


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
            up = GaugeMetricFamily(metrics.REDIS_UP, "1 when the metrics process reads Redis")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily(metrics.REDIS_UP, "1 when the metrics process reads Redis")
        up.add_metric([], 1)
        yield up
        yield from _node_families(fsm)
        paused = GaugeMetricFamily(
            metrics.PAUSED, "1 while the operator is paused (writes nothing)"
        )
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
        metrics.NODE_STATE, "1 for the node's current state", labels=["node", "state"]
    )
    profile = GaugeMetricFamily(
        metrics.NODE_PROFILE_LABEL, "1 for the node's applied profile", labels=["node", "profile"]
    )
    for node in sorted(fsm):
        record = fsm[node]
        for s in _STATES:
            state.add_metric([node, s.value], 1.0 if record.state == s else 0.0)
        for p in models.Profile:
            profile.add_metric([node, p.value], 1.0 if record.profile == p else 0.0)
    managed = GaugeMetricFamily(metrics.MANAGED_NODES, "Nodes in the FSM (managed)")
    managed.add_metric([], len(fsm))
    return [state, profile, managed]


def _counter_families(counters: Mapping[str, float]) -> Iterable[Metric]:
    series: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for key, value in counters.items():
        name, labels = metrics.parse_field(key)
        if (
            name.startswith(metrics.TICK_DURATION)
            or name.rsplit("_", 1)[0] in metrics.EXTRA_HISTOGRAMS
        ):
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
        name, labels = metrics.parse_field(key)
        if name == metrics.TICK_DURATION + "_bucket":
            stages[labels["stage"]]["buckets"][float(labels["le"])] = value
        elif name == metrics.TICK_DURATION + "_sum":
            stages[labels["stage"]]["sum"] = value
        elif name == metrics.TICK_DURATION + "_count":
            stages[labels["stage"]]["count"] = value
    if not stages:
        return
    family = HistogramMetricFamily(
        metrics.TICK_DURATION, "Tick duration by stage (total: tick start to end)", labels=["stage"]
    )
    for stage in sorted(stages):
        data = stages[stage]
        buckets = [(repr(b), data["buckets"].get(b, 0.0)) for b in metrics.DURATION_BUCKETS]
        buckets.append(("+Inf", data.get("count", 0.0)))
        family.add_metric([stage], buckets, data["sum"])
    yield family


def _gauge_families(gauges: Mapping[str, float]) -> Iterable[Metric]:
    series: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for key, value in gauges.items():
        name, labels = metrics.parse_field(key)
        series[name].append((labels, value))
    for name in sorted(series):
        rows = series[name]
        label_names = sorted({k for labels, _ in rows for k in labels})
        family = GaugeMetricFamily(name, name, labels=label_names)
        for labels, value in rows:
            family.add_metric([labels.get(k, "") for k in label_names], value)
        yield family


def _extra_histograms(counters: Mapping[str, float]) -> Iterable[Metric]:
    for name, bounds in metrics.EXTRA_HISTOGRAMS.items():
        count = counters.get(metrics.field(name + "_count"))
        if count is None:
            continue
        buckets = [
            (repr(b), counters.get(metrics.field(name + "_bucket", le=repr(b)), 0.0))
            for b in bounds
        ]
        buckets.append(("+Inf", count))
        family = HistogramMetricFamily(name, name.replace("_", " "))
        family.add_metric([], buckets, counters.get(metrics.field(name + "_sum"), 0.0))
        yield family
