"""metrics.Values: series by name and labels, summed or set, encoded as the fields the
store and the collector already use."""

from __future__ import annotations

from joulie_tasks.ports import metrics


def test_add_sums_per_series_and_set_replaces() -> None:
    values = metrics.Values()
    values.add(metrics.KUBE_RETRIES, 2, reason="conflict").add(
        metrics.KUBE_RETRIES, reason="conflict"
    )
    values.add(metrics.KUBE_RETRIES, reason="transient")
    values.set(metrics.LAST_TICK, 5.0).set(metrics.LAST_TICK, 7.5)
    assert values.as_dict() == {
        metrics.field(metrics.KUBE_RETRIES, reason="conflict"): 3.0,
        metrics.field(metrics.KUBE_RETRIES, reason="transient"): 1.0,
        metrics.field(metrics.LAST_TICK): 7.5,
    }


def test_fields_round_trip_through_parse_field() -> None:
    (key,) = metrics.Values().add("joulie_x_total", node="n1", result="applied").as_dict()
    assert metrics.parse_field(key) == ("joulie_x_total", {"node": "n1", "result": "applied"})
