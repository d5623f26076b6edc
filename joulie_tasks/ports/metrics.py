"""Every metric the operator exports, by name (docs/SPEC.md §8), and how an increment
is written down for the metrics process to read.

Workers keep no metric values in memory: they hand increments to the state store's
metrics sink (``ports.state.MetricsSink``) as Redis hash fields (:func:`field`), and
the metrics process builds every family from them at scrape time
(adapters/exporter.py). Names are the SPEC names verbatim and live here only, so a
new metric is one line in one module. No I/O here.
"""

from __future__ import annotations

import functools
import json

from joulie_tasks.core import models

# --- the tick and its writes -------------------------------------------------------------
NODE_STATE = "joulie_operator_node_state"
NODE_PROFILE_LABEL = "joulie_operator_node_profile_label"
MANAGED_NODES = "joulie_managed_nodes"
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
#: Profile changes withheld by damping, by ``reason`` (dwell, budget, freeze); counted
#: once per hold, when it starts (docs/SPEC.md §12.4).
TRANSITIONS_HELD = "joulie_transitions_held_total"
PAUSED = "joulie_paused"
LAST_TICK = "joulie_last_tick_timestamp_seconds"
RECONCILE_INTERVAL = "joulie_reconcile_interval_seconds"
REDIS_UP = "joulie_redis_up"

# --- the watch-fed cache (a tick's use of it: workflow/cache_tick.py) ---------------------
CACHE_FALLBACKS = "joulie_cache_fallbacks_total"
CONFIRMATIONS = "joulie_confirmations_total"
DOWNGRADES_STOPPED = "joulie_downgrades_stopped_total"
REACTION_LATENCY = "joulie_reaction_latency_seconds"
#: Ticks run quiet: nothing had changed since the last converged tick (§9.10).
QUIET_TICKS = "joulie_quiet_ticks_total"
CACHE_SYNCED = "joulie_cache_synced"
CACHE_AGE = "joulie_cache_age_seconds"

# --- the watcher (workflow/watcher.py) -----------------------------------------------------
WATCH_EVENTS = "joulie_watch_events_total"
WATCH_RELISTS = "joulie_watch_relists_total"
WATCH_ERRORS = "joulie_watch_errors_total"
KICKS = "joulie_kicks_total"
LEASE_CHANGES = "joulie_watch_lease_acquired_total"
WATCH_ACTIVE = "joulie_watch_active"
WATCH_LAST_RELIST = "joulie_watch_last_relist_timestamp_seconds"

#: The ``stage`` of a whole tick, start to end (the other stages are the chain's).
TOTAL_STAGE = "total"

DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

#: Histograms other than the tick duration: name → bucket bounds (label-free).
EXTRA_HISTOGRAMS: dict[str, tuple[float, ...]] = {
    REACTION_LATENCY: (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0)
}

_SEP = "\x1f"


def field(name: str, **labels: str) -> str:
    """Encode one series as a Redis hash field: name, separator, sorted JSON labels."""
    return name + _SEP + json.dumps(labels, sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=1 << 16)
def transition_field(node: str, from_state: str, to_state: str, result: str) -> str:
    """The field of one node's transitions series; cached, since a steady tick counts
    the same draining nodes' deferrals again every tick (D18)."""
    return field(
        STATE_TRANSITIONS, node=node, from_state=from_state, to_state=to_state, result=result
    )


def parse_field(text: str) -> tuple[str, dict[str, str]]:
    name, _, labels = text.partition(_SEP)
    return name, json.loads(labels) if labels else {}


class Values:
    """Metric values by series name and labels, so no caller builds a field string:
    ``add`` sums (counters), ``set`` replaces (gauges); ``as_dict()`` is what
    ``MetricsSink.add_counters`` / ``set_gauges`` take."""

    def __init__(self) -> None:
        self._by_field: dict[str, float] = {}

    def add(self, name: str, amount: float = 1.0, **labels: str) -> Values:
        return self.add_field(field(name, **labels), amount)

    def add_field(self, key: str, amount: float = 1.0) -> Values:
        """``add`` for a field built beforehand (``transition_field``)."""
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
