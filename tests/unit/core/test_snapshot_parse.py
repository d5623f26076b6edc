"""Extraction from raw API objects.

Covers: well-formed nodes, pods and NodePowerProfiles; a corpus of malformed pods
(missing spec, null affinity parts, unknown operators, non-string values, empty term
lists, wrong types everywhere) that must never raise and must classify
conservatively; eligibility selection and its byte-order sort.
"""

from __future__ import annotations

import pytest

from joulie_tasks.core import classify, models, selectors, snapshot_parse
from tests.unit.builders import affinity, expr, make_node, pod_manifest, term

# --- nodes -----------------------------------------------------------------------------


def test_a_node_manifest_yields_name_string_labels_and_schedulability() -> None:
    node = snapshot_parse.node_info_from_manifest(
        {
            "metadata": {
                "name": "n1",
                "resourceVersion": "42",
                "labels": {"a": "1", "b": 2, "c": None},
            },
            "spec": {"unschedulable": True},
        }
    )
    assert node == models.NodeInfo(
        name=models.NodeName("n1"), labels={"a": "1"}, unschedulable=True, resource_version="42"
    )


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"metadata": None},
        {"metadata": {"name": ""}},
        {"metadata": {"name": 5}},
        {"metadata": []},
    ],
    ids=["empty", "null-metadata", "empty-name", "number-name", "list-metadata"],
)
def test_a_node_without_a_usable_name_is_dropped(obj: dict[str, object]) -> None:
    assert snapshot_parse.node_info_from_manifest(obj) is None


@pytest.mark.parametrize(
    "spec", [None, {}, {"unschedulable": "true"}, {"unschedulable": 1}, "x"], ids=repr
)
def test_only_a_literal_true_makes_a_node_unschedulable(spec: object) -> None:
    node = snapshot_parse.node_info_from_manifest({"metadata": {"name": "n"}, "spec": spec})
    assert node is not None
    assert node.unschedulable is False


# --- pods ------------------------------------------------------------------------------


def test_a_pod_manifest_keeps_only_the_profile_key_constraints() -> None:
    spec = {
        "nodeName": "n1",
        "nodeSelector": {"joulie.io/power-profile": " performance ", "zone": "a"},
        **affinity(
            term(expr("In", ["eco"]), expr("In", ["x"], key="zone")),
            term(expr("NotIn", ["eco"])),
        ),
    }
    metadata = {"name": "p", "namespace": "ns", "deletionTimestamp": "2024-01-01T00:00:00Z"}
    pod = snapshot_parse.pod_info_from_manifest(
        pod_manifest(spec=spec, metadata=metadata, status={"phase": "Pending"})
    )
    assert pod == models.PodInfo(
        namespace="ns",
        name="p",
        node_name=models.NodeName("n1"),
        phase="Pending",
        deleting=True,
        node_selector_profile=" performance ",
        requirements=(
            models.Requirement(operator="In", values=("eco",)),
            models.Requirement(operator="NotIn", values=("eco",)),
        ),
    )


def test_a_null_deletion_timestamp_is_not_deleting() -> None:
    pod = snapshot_parse.pod_info_from_manifest(
        pod_manifest(metadata={"name": "p", "deletionTimestamp": None}, spec={})
    )
    assert pod is not None
    assert pod.deleting is False


PERF = models.DemandClass.PERFORMANCE_ONLY
GENERAL = models.DemandClass.GENERAL
ECO = models.DemandClass.ECO_ONLY

MALFORMED: list[tuple[str, dict[str, object], models.DemandClass, bool]] = [
    # (id, raw pod, expected class, problems reported?)
    ("missing-spec", pod_manifest(), GENERAL, True),
    ("spec-is-a-list", {"metadata": {"name": "p"}, "spec": []}, GENERAL, True),
    (
        "no-metadata",
        {"spec": {"nodeSelector": {"joulie.io/power-profile": "performance"}}},
        PERF,
        False,
    ),
    ("null-affinity", pod_manifest(spec={"affinity": None}), GENERAL, False),
    ("null-node-affinity", pod_manifest(spec={"affinity": {"nodeAffinity": None}}), GENERAL, False),
    (
        "null-required",
        pod_manifest(
            spec={
                "affinity": {
                    "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": None}
                }
            }
        ),
        GENERAL,
        False,
    ),
    ("empty-term-list", pod_manifest(spec=affinity()), GENERAL, False),
    (
        "terms-not-a-list",
        pod_manifest(
            spec={
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": "x"}
                    }
                }
            }
        ),
        GENERAL,
        True,
    ),
    (
        "term-not-a-dict",
        pod_manifest(spec=affinity("oops", term(expr("In", ["performance"])))),
        PERF,
        True,
    ),
    ("null-term", pod_manifest(spec=affinity(None)), GENERAL, True),
    (
        "match-expressions-null",
        pod_manifest(spec=affinity({"matchExpressions": None})),
        GENERAL,
        False,
    ),
    (
        "match-expressions-dict",
        pod_manifest(spec=affinity({"matchExpressions": {}})),
        GENERAL,
        True,
    ),
    ("entry-not-a-dict", pod_manifest(spec=affinity(term(7, expr("NotIn", ["eco"])))), PERF, True),
    (
        "unknown-operator",
        pod_manifest(spec=affinity(term(expr("Maybe", ["performance"])))),
        GENERAL,
        False,
    ),
    (
        "operator-not-a-string",
        pod_manifest(spec=affinity(term(expr(1, ["performance"])))),
        GENERAL,
        True,
    ),
    (
        "operator-null",
        pod_manifest(spec=affinity(term(expr(None, ["performance"])))),
        GENERAL,
        True,
    ),
    ("values-null", pod_manifest(spec=affinity(term(expr("In")))), GENERAL, False),
    (
        "values-a-string",
        pod_manifest(spec=affinity(term(expr("In", "performance")))),
        GENERAL,
        True,
    ),
    (
        "values-non-strings",
        pod_manifest(spec=affinity(term(expr("In", [1, None, "eco"])))),
        ECO,
        True,
    ),
    (
        "values-all-non-strings",
        pod_manifest(spec=affinity(term(expr("In", [1, 2])))),
        GENERAL,
        True,
    ),
    (
        "key-not-a-string",
        pod_manifest(spec=affinity(term(expr("In", ["performance"], key=5)))),
        GENERAL,
        False,
    ),
    (
        "selector-not-a-string",
        pod_manifest(spec={"nodeSelector": {"joulie.io/power-profile": 1}}),
        GENERAL,
        True,
    ),
    ("selector-a-list", pod_manifest(spec={"nodeSelector": ["performance"]}), GENERAL, False),
    ("node-name-a-number", pod_manifest(spec={"nodeName": 3}), GENERAL, False),
    ("status-a-string", pod_manifest(spec={}, status="Running"), GENERAL, False),
    ("phase-a-number", pod_manifest(spec={}, status={"phase": 1}), GENERAL, False),
    (
        "perf-despite-junk-elsewhere",
        pod_manifest(
            spec={
                "nodeName": ["x"],
                "nodeSelector": {"joulie.io/power-profile": "performance"},
                "affinity": "junk",
            },
            metadata={"name": 1, "namespace": None, "labels": "x"},
        ),
        PERF,
        False,
    ),
]


@pytest.mark.parametrize(
    ("obj", "expected", "reports"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_pods_never_raise_and_classify_conservatively(
    obj: dict[str, object], expected: models.DemandClass, reports: bool
) -> None:
    pod, problems = snapshot_parse.pod_info_with_problems(obj)
    assert pod is not None
    assert classify.classify_pod(pod) is expected
    assert bool(problems) is reports
    assert all(isinstance(p, str) and p for p in problems)


@pytest.mark.parametrize("obj", [None, [], "pod", 3], ids=repr)
def test_a_pod_that_is_not_an_object_is_dropped_with_a_problem(obj: object) -> None:
    pod, problems = snapshot_parse.pod_info_with_problems(obj)  # type: ignore[arg-type]
    assert pod is None
    assert problems == ("pod is not an object",)


def test_unbound_active_pods_have_no_node_and_no_phase() -> None:
    pod = snapshot_parse.pod_info_from_manifest(pod_manifest(spec={}))
    assert pod is not None
    assert (pod.node_name, pod.phase, pod.deleting) == (None, None, False)
    assert classify.is_active(pod)


# --- NodePowerProfiles -----------------------------------------------------------------


def test_a_node_power_profile_manifest_yields_its_spec_and_owner() -> None:
    npp = snapshot_parse.npp_info_from_manifest(
        {
            "metadata": {
                "name": "node-a",
                "resourceVersion": "9",
                "labels": {"joulie.io/managed-by": "operator"},
            },
            "spec": {
                "nodeName": "a",
                "profile": "eco",
                "cpu": {"packagePowerCapWatts": 120},
                "policy": {"name": "queue-aware-v1"},
            },
        }
    )
    assert npp == models.NppInfo(
        name=models.NppName("node-a"),
        resource_version="9",
        node_name="a",
        profile="eco",
        cap_watts=120.0,
        policy_name="queue-aware-v1",
        managed_by="operator",
    )


@pytest.mark.parametrize("cap", ["120", True, None, [1], float("nan"), float("inf")], ids=repr)
def test_a_non_numeric_cap_reads_as_absent(cap: object) -> None:
    npp = snapshot_parse.npp_info_from_manifest(
        {"metadata": {"name": "node-a"}, "spec": {"cpu": {"packagePowerCapWatts": cap}}}
    )
    assert npp is not None
    assert npp.cap_watts is None


def test_a_hand_made_profile_with_wrong_types_reads_as_empty_fields() -> None:
    npp = snapshot_parse.npp_info_from_manifest(
        {"metadata": {"name": "node-a", "labels": None}, "spec": {"nodeName": 1, "cpu": 5}}
    )
    assert npp == models.NppInfo(name=models.NppName("node-a"))


def test_a_profile_without_a_name_is_dropped() -> None:
    assert snapshot_parse.npp_info_from_manifest({"spec": {"nodeName": "a"}}) is None


# --- eligibility -----------------------------------------------------------------------

SELECTOR = selectors.parse_selector("joulie.io/managed=true")


def test_eligible_nodes_match_the_selector_and_are_schedulable_and_not_reserved() -> None:
    nodes = [
        make_node("keep"),
        make_node("unmanaged", managed=False),
        make_node("cordoned", unschedulable=True),
        make_node("reserved", labels={"joulie.io/reserved": "true"}),
        make_node("reserved-false", labels={"joulie.io/reserved": "false"}),
        make_node("reserved-True", labels={"joulie.io/reserved": "True"}),
    ]
    eligible = snapshot_parse.select_eligible(
        nodes, selector=SELECTOR, reserved_label_key="joulie.io/reserved"
    )
    assert [n.name for n in eligible] == ["keep", "reserved-True", "reserved-false"]


def test_eligible_nodes_are_sorted_in_byte_order() -> None:
    # UTF-8 byte order equals code-point order (unlike UTF-16, where U+10000 would
    # sort before U+FF21); upper case sorts before lower case, '-' before '.'.
    names = ["b", "B", "a", "\uff21", "\U00010000", "a-1", "a.1"]
    eligible = snapshot_parse.select_eligible(
        [make_node(n) for n in names], selector=SELECTOR, reserved_label_key="r"
    )
    assert [n.name for n in eligible] == sorted(names, key=str.encode)
    assert [n.name for n in eligible] == ["B", "a", "a-1", "a.1", "b", "\uff21", "\U00010000"]


def test_the_empty_selector_makes_every_schedulable_node_eligible() -> None:
    nodes = [make_node("x", managed=False), make_node("y", unschedulable=True)]
    eligible = snapshot_parse.select_eligible(
        nodes, selector=selectors.parse_selector(""), reserved_label_key="r"
    )
    assert [n.name for n in eligible] == ["x"]
