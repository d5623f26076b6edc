"""Label selectors: every docs/SPEC.md §2 form, Kubernetes matching semantics, key/value
validation, and error positions."""

from __future__ import annotations

import pytest

from joulie_tasks.core import selectors

LABELS = {"joulie.io/managed": "true", "zone": "a", "tier": ""}


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("", {}, True),
        ("   ", LABELS, True),
        ("joulie.io/managed=true", LABELS, True),
        ("joulie.io/managed==true", LABELS, True),
        ("joulie.io/managed=false", LABELS, False),
        ("zone!=b", LABELS, True),
        ("zone!=a", LABELS, False),
        ("missing!=a", LABELS, True),
        ("zone in (a,b)", LABELS, True),
        ("zone in (b,c)", LABELS, False),
        ("missing in (a)", LABELS, False),
        ("zone notin (a,b)", LABELS, False),
        ("zone notin (b)", LABELS, True),
        ("missing notin (a)", LABELS, True),
        ("zone", LABELS, True),
        ("missing", LABELS, False),
        ("!missing", LABELS, True),
        ("!zone", LABELS, False),
        ("tier=", LABELS, True),
        ("zone=a,joulie.io/managed=true", LABELS, True),
        ("zone=a,joulie.io/managed=false", LABELS, False),
        ("  zone in ( a , b ) ,  ! missing , joulie.io/managed ", LABELS, True),
    ],
    ids=lambda v: repr(v) if isinstance(v, str) else "",
)
def test_selector_forms_match_as_kubernetes_does(
    text: str, labels: dict[str, str], expected: bool
) -> None:
    assert selectors.matches(selectors.parse_selector(text), labels) is expected


def test_equality_forms_normalise_to_the_same_requirement() -> None:
    one = selectors.parse_selector("a=b")
    assert one == selectors.parse_selector("a==b") == selectors.parse_selector("a in (b)")
    assert one.requirements[0].operator is selectors.SelectorOperator.IN


def test_canonical_form_round_trips() -> None:
    sel = selectors.parse_selector("x in (b, a),!y,z,w!=1,v notin (c,d),k=")
    assert str(sel) == "x in (a,b),!y,z,w!=1,v notin (c,d),k="
    assert selectors.parse_selector(str(sel)) == sel


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("k in (a", 7, "expected ',' or ')'"),
        ("k in a", 5, "expected '('"),
        ("k in ()", 6, "at least one value"),
        ("a b", 2, "expected one of"),
        ("a>1", 1, "expected one of"),
        ("a=b=c", 3, "expected ',' or end"),
        ("!", 1, "expected a label key"),
        ("a,", 2, "expected a label key"),
        (",", 0, "expected a label key"),
        ("=x", 0, "expected a label key"),
        ("a=-b", 2, "invalid label value"),
        ("a=" + "v" * 64, 2, "invalid label value"),
        ("-a=b", 0, "invalid label key"),
        ("Bad_Prefix/x=1", 0, "prefix must be a DNS subdomain"),
        ("/x=1", 0, "prefix part must not be empty"),
        ("example.com/=1", 0, "invalid label key"),
        ("k" * 64, 0, "invalid label key"),
        ("zone=a, tier in (x,y) bogus", 22, "expected ',' or end"),
    ],
    ids=repr,
)
def test_invalid_selectors_report_where_they_fail(text: str, position: int, fragment: str) -> None:
    with pytest.raises(selectors.SelectorError) as caught:
        selectors.parse_selector(text)
    assert caught.value.position == position
    assert str(caught.value).startswith(f"at position {position}: ")
    assert fragment in str(caught.value)


def test_selector_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="at position 7: expected ',' or '\\)'"):
        selectors.parse_selector("k in (a")


def test_long_but_valid_keys_and_values_are_accepted() -> None:
    key = "a" * 253 + "/" + "b" * 63
    sel = selectors.parse_selector(f"{key}={'c' * 63}")
    assert selectors.matches(sel, {key: "c" * 63})


def test_a_label_key_may_be_spelled_like_a_keyword() -> None:
    assert selectors.matches(selectors.parse_selector("in=1,notin"), {"in": "1", "notin": ""})
