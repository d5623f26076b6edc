"""Demand classification: the docs/SPEC.md §4 table, trimming, the active filter and
the demand summary."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from joulie_tasks.core import classify, models
from tests.unit.builders import make_pod, perf_pod

PERF = models.DemandClass.PERFORMANCE_ONLY
ECO = models.DemandClass.ECO_ONLY
GENERAL = models.DemandClass.GENERAL

Reqs = Sequence[tuple[str, Sequence[str]]]

# docs/SPEC.md §4 worked cases, in the order of the table.
SPEC_TABLE: list[tuple[str, str | None, Reqs, models.DemandClass]] = [
    ("none", None, (), GENERAL),
    ("nodeSelector performance", "performance", (), PERF),
    ("nodeSelector eco", "eco", (), ECO),
    ("nodeSelector ultra (unknown value)", "ultra", (), GENERAL),
    ("required In [performance]", None, [("In", ["performance"])], PERF),
    ("required In [eco]", None, [("In", ["eco"])], ECO),
    ("required In [eco, performance]", None, [("In", ["eco", "performance"])], GENERAL),
    (
        "two OR-ed terms In [performance] / In [eco]",
        None,
        [("In", ["performance"]), ("In", ["eco"])],
        PERF,
    ),
    ("required NotIn [eco]", None, [("NotIn", ["eco"])], PERF),
    ("required NotIn [performance]", None, [("NotIn", ["performance"])], GENERAL),
    ("required DoesNotExist", None, [("DoesNotExist", [])], GENERAL),
    ("required Gt [1]", None, [("Gt", ["1"])], GENERAL),
    ("nodeSelector performance + required In [eco]", "performance", [("In", ["eco"])], PERF),
]


@pytest.mark.parametrize(
    ("selector", "requirements", "expected"),
    [row[1:] for row in SPEC_TABLE],
    ids=[row[0] for row in SPEC_TABLE],
)
def test_spec_section_4_worked_cases(
    selector: str | None, requirements: Reqs, expected: models.DemandClass
) -> None:
    assert classify.classify_pod(make_pod(selector=selector, requirements=requirements)) is expected


@pytest.mark.parametrize(
    ("selector", "requirements", "expected"),
    [
        (" performance ", (), PERF),
        ("\teco\n", (), ECO),
        (None, [("In", [" performance"])], PERF),
        (None, [("In", ["eco "])], ECO),
        (None, [("NotIn", [" eco "])], PERF),
        (None, [("In", [" eco", "performance "])], GENERAL),
        ("Performance", (), GENERAL),
    ],
    ids=["selector-perf", "selector-eco-tabs", "in-perf", "in-eco", "notin-eco", "in-both", "case"],
)
def test_values_are_compared_trimmed_and_case_sensitively(
    selector: str | None, requirements: Reqs, expected: models.DemandClass
) -> None:
    assert classify.classify_pod(make_pod(selector=selector, requirements=requirements)) is expected


@pytest.mark.parametrize(
    ("requirements", "expected"),
    [
        ([("In", [])], GENERAL),
        ([("NotIn", [])], GENERAL),
        ([("in", ["performance"])], GENERAL),
        ([("Exists", ["performance"])], GENERAL),
        ([("In", ["ultra"])], PERF),
        ([("In", ["eco"]), ("In", [])], ECO),
    ],
    ids=["empty-in", "empty-notin", "lower-case-operator", "exists", "in-unknown", "eco-and-empty"],
)
def test_unknown_operators_and_empty_value_lists_are_ignored(
    requirements: Reqs, expected: models.DemandClass
) -> None:
    assert classify.classify_pod(make_pod(requirements=requirements)) is expected


@pytest.mark.parametrize(
    ("phase", "deleting", "active"),
    [
        ("Running", False, True),
        ("Pending", False, True),
        (None, False, True),
        ("Unknown", False, True),
        ("Succeeded", False, False),
        ("Failed", False, False),
        ("Running", True, False),
        ("Pending", True, False),
    ],
    ids=lambda v: str(v),
)
def test_active_pods_are_neither_deleting_nor_finished(
    phase: str | None, deleting: bool, active: bool
) -> None:
    assert classify.is_active(make_pod(phase=phase, deleting=deleting)) is active


def test_unreadable_pods_give_unknown_demand() -> None:
    assert classify.summarise_demand(None) == models.Demand(known=False)


def test_demand_counts_active_pods_by_class_and_bound_performance_pods_by_node() -> None:
    pods = [
        perf_pod("p1", node="n1"),
        perf_pod("p2", node="n1"),
        perf_pod("p3", node="n2"),
        perf_pod("pending-unbound"),
        make_pod("p-done", node="n1", phase="Succeeded", selector="performance"),
        make_pod("p-deleting", node="n2", deleting=True, selector="performance"),
        make_pod("e1", node="n1", selector="eco"),
        make_pod("g1", node="n3"),
        make_pod("g-failed", phase="Failed"),
    ]
    assert classify.summarise_demand(pods) == models.Demand(
        performance_pods=4,
        eco_pods=1,
        general_pods=1,
        performance_pods_by_node={models.NodeName("n1"): 2, models.NodeName("n2"): 1},
    )


def test_no_pods_is_known_zero_demand() -> None:
    assert classify.summarise_demand([]) == models.Demand()
