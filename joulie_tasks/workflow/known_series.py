"""The counter and histogram series known before anything happens (docs/SPEC.md §8.4).

``joulie-tasks metrics`` exports each of them at 0 from start-up, so the first event
moves ``increase()``: a series born at 1 on its first increment shows no increase,
and an alert on the first failed write would never fire. Every label value comes from
the vocabulary the counting code itself uses (an enum, a tuple of constants), never
from a second list here; tests/unit/workflow/test_known_series.py checks that the code
counts with nothing else.

Not declared, because their label values are not known in advance: the per-node
families (``node``), the HTTP status ``outcome`` of API requests (only ``error``, no
answer, is declared), and a watch relist after an ``ERROR`` event (``error_<code>``).
No I/O: the result is a mapping of Redis hash fields to 0 for the collector.
"""

from __future__ import annotations

from enum import StrEnum

from joulie_tasks.core import cache, models
from joulie_tasks.ports import cluster, metrics
from joulie_tasks.workflow import reconcile, watcher

#: The ``stage`` values of joulie_tick_duration_seconds: the chain's, then the whole tick.
STAGES = (*reconcile.STAGES, metrics.TOTAL_STAGE)
#: Counters without labels, incremented only once something happened.
_PLAIN_COUNTERS = (
    metrics.KUBE_CONFLICTS,
    metrics.WRITES,
    metrics.WRITE_FAILURES,
    metrics.LEADER_CHANGES,
    metrics.POLICY_FALLBACKS,
    metrics.CONFIRMATIONS,
    metrics.DOWNGRADES_STOPPED,
    metrics.QUIET_TICKS,
    metrics.LEASE_CHANGES,
)

#: Counters with one label, and the enum whose members are its values.
_ONE_LABEL: tuple[tuple[str, str, type[StrEnum]], ...] = (
    (metrics.TICKS, "result", models.TickResult),
    (metrics.KUBE_RETRIES, "reason", models.RetryReason),
    (metrics.TRANSITIONS_HELD, "reason", models.HoldReason),
    (metrics.CACHE_FALLBACKS, "reason", cache.Unusable),
    (metrics.KICKS, "result", watcher.KickResult),
)


def known_series() -> dict[str, float]:
    """Every counter and histogram series whose labels are known, at 0 (Redis fields)."""
    values = metrics.Values()
    for name in _PLAIN_COUNTERS:
        values.add(name, 0)
    for name, label, vocabulary in _ONE_LABEL:
        for member in vocabulary:
            values.add(name, 0, **{label: member.value})
    for verb, resource in cluster.COUNTED_REQUESTS:
        values.add(
            metrics.KUBE_REQUESTS,
            0,
            verb=verb,
            resource=resource.plural,
            outcome=cluster.NO_ANSWER,
        )
    for name in watcher.RESOURCES:
        values.add(metrics.WATCH_ERRORS, 0, resource=name)
        for kind in watcher.EVENT_TYPES:
            values.add(metrics.WATCH_EVENTS, 0, resource=name, type=kind)
        for relist in watcher.RelistReason:
            values.add(metrics.WATCH_RELISTS, 0, resource=name, reason=relist.value)
    series = values.as_dict()
    for stage in STAGES:
        series.update(
            metrics.zero_histogram(metrics.TICK_DURATION, metrics.DURATION_BUCKETS, stage=stage)
        )
    for name, buckets in metrics.EXTRA_HISTOGRAMS.items():
        series.update(metrics.zero_histogram(name, buckets))
    return series
