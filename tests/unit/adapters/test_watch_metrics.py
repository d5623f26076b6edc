"""The watcher's metric families as the scrape builds them from Redis values."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from joulie_tasks.adapters import exporter
from joulie_tasks.ports import metrics


def _scrape(counters: dict[str, float], gauges: dict[str, float]) -> str:
    registry = CollectorRegistry()
    registry.register(exporter.RedisCollector(lambda: (counters, gauges, {}, False)))
    return generate_latest(registry).decode()


def test_reaction_latency_is_a_histogram_and_not_a_counter() -> None:
    counters: dict[str, float] = {}
    for seconds in (0.4, 1.2, 7.0):
        for key, n in metrics.histogram_increments(
            metrics.REACTION_LATENCY, seconds, metrics.EXTRA_HISTOGRAMS[metrics.REACTION_LATENCY]
        ).items():
            counters[key] = counters.get(key, 0.0) + n
    counters[metrics.field(metrics.CACHE_FALLBACKS, reason="stale")] = 2.0
    text = _scrape(counters, {metrics.field("joulie_cache_age_seconds"): 0.5})
    assert 'joulie_reaction_latency_seconds_bucket{le="0.5"} 1.0' in text
    assert 'joulie_reaction_latency_seconds_bucket{le="2.0"} 2.0' in text
    assert 'joulie_reaction_latency_seconds_bucket{le="+Inf"} 3.0' in text
    assert "joulie_reaction_latency_seconds_count 3.0" in text
    assert "joulie_reaction_latency_seconds_sum 8.6" in text
    assert 'joulie_cache_fallbacks_total{reason="stale"} 2.0' in text
    assert "joulie_cache_age_seconds 0.5" in text
    # the histogram's series never leak into the counter families
    assert "joulie_reaction_latency_seconds_bucket_total" not in text
