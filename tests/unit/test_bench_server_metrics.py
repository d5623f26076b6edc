"""The real-server benchmark's pure parts (bench/kubeapi.py, bench/run.py).

Covers: reading ``apiserver_request_total`` and the request-duration histogram from
the server's ``/metrics`` text, diffing two reads, Prometheus' ``histogram_quantile``
estimate, grouping latencies per verb and resource, the operator's objects taken
from ``deploy/``, and replacing only the real-server section of docs/BENCHMARKS.md.
The benchmark itself is not run here (it measures; it is not a test).
"""

from __future__ import annotations

import math

import pytest

from bench import kubeapi, run

_BEFORE = """\
# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",resource="nodes",subresource="",verb="LIST"} 3
apiserver_request_total{code="200",resource="pods",subresource="",verb="LIST"} 40
apiserver_request_total{code="200",resource="leases",subresource="",verb="PUT"} 7
apiserver_request_duration_seconds_bucket{resource="nodes",verb="PATCH",le="0.005"} 1
apiserver_request_duration_seconds_bucket{resource="nodes",verb="PATCH",le="0.025"} 1
apiserver_request_duration_seconds_bucket{resource="nodes",verb="PATCH",le="+Inf"} 1
apiserver_request_duration_seconds_sum{resource="nodes",verb="PATCH"} 0.001
apiserver_request_duration_seconds_count{resource="nodes",verb="PATCH"} 1
"""
_AFTER = """\
apiserver_request_total{code="200",resource="nodes",subresource="",verb="LIST"} 5
apiserver_request_total{code="200",resource="pods",subresource="",verb="LIST"} 40
apiserver_request_total{code="200",resource="leases",subresource="",verb="PUT"} 7
apiserver_request_total{code="409",resource="nodepowerprofiles",subresource="",verb="PUT"} 2
apiserver_request_total{code="200",resource="",subresource="/a,b \\"x\\"",verb="GET"} 1
apiserver_request_duration_seconds_bucket{resource="nodes",verb="PATCH",le="0.005"} 11
apiserver_request_duration_seconds_bucket{resource="nodes",verb="PATCH",le="0.025"} 21
apiserver_request_duration_seconds_bucket{resource="nodes",verb="PATCH",le="+Inf"} 21
apiserver_request_duration_seconds_sum{resource="nodes",verb="PATCH"} 0.201
apiserver_request_duration_seconds_count{resource="nodes",verb="PATCH"} 21
"""


def _totals(scrape: kubeapi.Scrape) -> dict[tuple[str, str, str], float]:
    return {
        (labels["verb"], labels["resource"], labels["code"]): value
        for labels, value in scrape.rows(kubeapi.REQUEST_TOTAL)
    }


def test_a_window_holds_only_the_requests_made_in_it() -> None:
    before = kubeapi.Scrape.parse(_BEFORE)
    after = kubeapi.Scrape.parse(_AFTER)

    window = after.minus(before)

    assert _totals(window) == {
        ("LIST", "nodes", "200"): 2,
        ("PUT", "nodepowerprofiles", "409"): 2,
        ("GET", "", "200"): 1,
    }


def test_label_values_may_hold_commas_and_escaped_quotes() -> None:
    scrape = kubeapi.Scrape.parse(_AFTER)

    subresources = {labels["subresource"] for labels, _ in scrape.rows(kubeapi.REQUEST_TOTAL)}

    assert '/a,b \\"x\\"' in subresources


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, [(0.005, 10.0), (0.025, 20.0), (math.inf, 20.0)], 0.005),
        (0.75, [(0.005, 10.0), (0.025, 20.0), (math.inf, 20.0)], 0.015),
        (0.5, [(0.005, 0.0), (0.025, 4.0), (math.inf, 4.0)], 0.015),
        (0.99, [(0.005, 0.0), (0.025, 0.0), (math.inf, 4.0)], 0.025),
    ],
    ids=["end-of-first-bucket", "inside-second-bucket", "empty-first-bucket", "in-+Inf"],
)
def test_quantiles_are_prometheus_histogram_quantile(
    q: float, buckets: list[tuple[float, float]], expected: float
) -> None:
    assert kubeapi.quantile(q, buckets) == pytest.approx(expected)


def test_a_quantile_of_no_requests_is_not_a_number() -> None:
    assert math.isnan(kubeapi.quantile(0.5, [(0.005, 0.0), (math.inf, 0.0)]))


def test_latencies_are_grouped_per_verb_and_resource_with_an_exact_mean() -> None:
    window = kubeapi.Scrape.parse(_AFTER).minus(kubeapi.Scrape.parse(_BEFORE))

    lat = kubeapi.latencies(window, lambda labels: f"{labels['verb']} {labels['resource']}")

    patch = lat["PATCH nodes"]
    assert (patch.count, patch.mean_s) == (20, pytest.approx(0.01))
    assert patch.p50_s == pytest.approx(0.005)
    assert patch.p90_s == pytest.approx(0.005 + 0.02 * 0.8)


def test_the_operator_objects_come_from_deploy_in_its_namespace() -> None:
    docs = kubeapi.operator_manifests()

    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
    ]
    account = next(d for d in docs if d["kind"] == "ServiceAccount")
    assert account["metadata"]["namespace"] == kubeapi.OPERATOR_NAMESPACE


_REPORT = "# Benchmarks\n\n## Memory\n\ntable\n\n## Targets\n\n- met\n"
_SECTION = f"{run.REAL_HEADING}\n\nfigures v1\n\n### latency\n\nrows\n"


def test_the_real_server_section_goes_before_the_targets() -> None:
    text = run.splice_real_section(_REPORT, _SECTION)

    assert text == ("# Benchmarks\n\n## Memory\n\ntable\n\n" + _SECTION + "\n## Targets\n\n- met\n")
    assert run.real_section(text) == _SECTION


def test_a_new_real_server_run_replaces_only_its_own_section() -> None:
    first = run.splice_real_section(_REPORT, _SECTION)

    second = run.splice_real_section(first, _SECTION.replace("v1", "v2"))

    assert second == first.replace("figures v1", "figures v2")
    assert run.splice_real_section(second, run.real_section(second) or "") == second


def test_without_targets_the_section_is_appended() -> None:
    assert run.splice_real_section("# B\n", _SECTION) == "# B\n\n" + _SECTION
