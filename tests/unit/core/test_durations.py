"""Go-style durations: the accepted grammar, rejections, and compact formatting."""

from __future__ import annotations

import pytest

from joulie_tasks.core import durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300ms", 0.3),
        ("1.5h", 5400.0),
        ("1m30s", 90.0),
        ("2h45m", 9900.0),
        ("30s", 30.0),
        ("1m", 60.0),
        ("500ms", 0.5),
        ("0", 0.0),
        ("0s", 0.0),
        ("-1m", -60.0),
        ("+5s", 5.0),
        (".5s", 0.5),
        ("1.s", 1.0),
        ("1.1h", 3960.0),
        ("1h1m1s1ms1us1ns", 3661.001001001),
        ("2µs", 2e-6),
        ("2μs", 2e-6),
        ("7ns", 7e-9),
    ],
    ids=lambda v: str(v),
)
def test_go_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert durations.parse_duration(text) == pytest.approx(seconds, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(
    "text",
    ["", "5", "1d", " 1s", "1s ", "1 s", ".s", "-", "+", "1.2.3s", "0s0", "1S", "\u0661s", "1h-1m"],
    ids=repr,
)
def test_malformed_durations_are_rejected_with_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected a Go duration such as 30s, 1m30s, 500ms"):
        durations.parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (90, "1m30s"),
        (0, "0s"),
        (0.5, "500ms"),
        (3600, "1h"),
        (3690, "1h1m30s"),
        (1.5, "1.5s"),
        (-90, "-1m30s"),
        (1.5e-6, "1.5µs"),
        (1e-9, "1ns"),
        (60, "1m"),
    ],
    ids=str,
)
def test_durations_format_compactly(seconds: float, text: str) -> None:
    assert durations.format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [90, 0.3, 3661.5, 1e-3, 86400.25, -12.75])
def test_formatted_durations_parse_back_to_the_same_value(seconds: float) -> None:
    again = durations.parse_duration(durations.format_duration(seconds))
    assert again == pytest.approx(seconds, abs=1e-9)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1700000000", 1_700_000_000.0), ("2023-11-14T22:13:20Z", 1_700_000_000.0), ("0", 0.0)],
)
def test_time_points_are_unix_seconds_or_zoned_iso_8601(text: str, expected: float) -> None:
    assert durations.parse_time_point(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "2023-11-14T22:13:20", ""])
def test_bad_or_zoneless_time_points_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        durations.parse_time_point(text)
