"""Schedules (docs/SPEC.md §12.3): parsing, errors naming window and field, activity.

- every invalid window is one message naming the window and the field;
- a window is active on [opening, opening + duration) in its own time zone, across DST;
- overlapping windows: later ones override field by field, any freeze freezes;
- property: "0 8 * * 1-5" for 10h in Europe/Rome is active exactly on weekdays 08-18.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from joulie_tasks.core import models, schedule

ROME = ZoneInfo("Europe/Rome")
OFFICE = {
    "name": "office-hours",
    "cron": "0 8 * * 1-5",
    "duration": "10h",
    "timezone": "Europe/Rome",
    "freeze_downgrades": True,
}
NIGHT = {"name": "night", "cron": "0 22 * * *", "duration": "8h", "policy": {"static_hp_frac": 0.1}}


def at(text: str, zone: ZoneInfo = ROME) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


def test_a_valid_schedule_parses_into_windows() -> None:
    parsed = schedule.parse_schedule({"windows": [OFFICE, NIGHT]})
    assert [w.name for w in parsed.windows] == ["office-hours", "night"]
    assert parsed.windows[0].duration_s == 36_000
    assert parsed.windows[1].timezone == "UTC"
    assert parsed.windows[1].policy.static_hp_frac == 0.1


@pytest.mark.parametrize("data", [None, {}, {"windows": []}, {"windows": None}])
def test_an_empty_schedule_has_no_window(data: object) -> None:
    assert schedule.parse_schedule(data) == models.Schedule()


INVALID = [
    ({"windows": [{**OFFICE, "cron": "0 8 * *"}]}, "window 'office-hours', field 'cron'"),
    ({"windows": [{**OFFICE, "cron": "61 8 * * *"}]}, "window 'office-hours', field 'cron'"),
    ({"windows": [{**OFFICE, "cron": 8}]}, "window 'office-hours', field 'cron'"),
    ({"windows": [{**OFFICE, "duration": "10"}]}, "window 'office-hours', field 'duration'"),
    ({"windows": [{**OFFICE, "duration": "-1h"}]}, "window 'office-hours', field 'duration'"),
    ({"windows": [{**OFFICE, "duration": 3600}]}, "window 'office-hours', field 'duration'"),
    ({"windows": [{**OFFICE, "timezone": "Mars/Olympus"}]}, "field 'timezone'"),
    ({"windows": [{**OFFICE, "timezone": "../etc"}]}, "field 'timezone'"),
    ({"windows": [{**OFFICE, "freeze": True}]}, "window 'office-hours', field 'freeze'"),
    (
        {"windows": [{**NIGHT, "policy": {"static_hp_frac": 2}}]},
        "window 'night', field 'policy.static_hp_frac'",
    ),
    (
        {"windows": [{**NIGHT, "policy": {"hp_frac": 0.2}}]},
        "window 'night', field 'policy.hp_frac'",
    ),
    (
        {"windows": [{**OFFICE, "freeze_downgrades": "sometimes"}]},
        "field 'freeze_downgrades'",
    ),
    ({"windows": [{**OFFICE, "name": ""}]}, "window #1, field 'name'"),
    ({"windows": [OFFICE, OFFICE]}, "window 'office-hours', field 'name': used twice"),
    ({"windows": ["office"]}, "window #1: expected a mapping"),
    ({"windows": {"a": 1}}, "field 'windows'"),
    ({"window": []}, "one key, 'windows'"),
    (["x"], "one key, 'windows'"),
]


@pytest.mark.parametrize(
    ("data", "message"),
    INVALID,
    ids=[
        "cron-four-fields",
        "cron-bad-minute",
        "cron-not-text",
        "duration-no-unit",
        "duration-negative",
        "duration-a-number",
        "zone-unknown",
        "zone-path",
        "unknown-field",
        "override-out-of-range",
        "override-unknown",
        "freeze-not-a-bool",
        "name-empty",
        "name-twice",
        "window-not-a-mapping",
        "windows-not-a-list",
        "top-level-key",
        "top-level-list",
    ],
)
def test_an_invalid_schedule_names_the_window_and_the_field(data: object, message: str) -> None:
    with pytest.raises(schedule.ScheduleError) as caught:
        schedule.parse_schedule(data)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


OFFICE_WINDOW = schedule.parse_schedule({"windows": [OFFICE]})


@pytest.mark.parametrize(
    ("when", "active"),
    [
        ("2026-12-07T07:59:59", False),  # Monday, before opening
        ("2026-12-07T08:00:00", True),  # opening instant
        ("2026-12-07T17:59:59", True),
        ("2026-12-07T18:00:00", False),  # closing instant is outside
        ("2026-12-05T12:00:00", False),  # Saturday
        ("2026-03-30T08:30:00", True),  # Monday after the spring DST change
        ("2026-10-26T08:30:00", True),  # Monday after the autumn DST change
        ("2026-10-26T07:30:00", False),
    ],
)
def test_a_window_is_active_from_its_opening_for_its_duration(when: str, active: bool) -> None:
    assert bool(schedule.active_windows(OFFICE_WINDOW, at=at(when))) is active


def test_a_window_opened_yesterday_is_still_active_after_midnight() -> None:
    night = schedule.parse_schedule({"windows": [NIGHT]})
    utc = ZoneInfo("UTC")
    assert schedule.active_windows(night, at=at("2026-12-08T03:00:00", utc)) == night.windows
    assert schedule.active_windows(night, at=at("2026-12-08T06:00:00", utc)) == ()


def test_later_windows_override_field_by_field_and_any_freeze_freezes() -> None:
    both = schedule.parse_schedule(
        {
            "windows": [
                {**NIGHT, "name": "a", "policy": {"static_hp_frac": 0.1, "queue_hp_min": 2}},
                {**NIGHT, "name": "b", "policy": {"static_hp_frac": 0.3}},
                {**NIGHT, "name": "c", "policy": {}, "freeze_downgrades": True},
            ]
        }
    )
    active = schedule.active_windows(both, at=at("2026-12-08T23:00:00", ZoneInfo("UTC")))
    params = schedule.policy_at(models.PolicyParams(), active=active)
    assert (params.static_hp_frac, params.queue_hp_min) == (0.3, 2)
    assert schedule.freezing_window(active) == "c"
    assert schedule.policy_at(models.PolicyParams(), active=()) == models.PolicyParams()
    assert schedule.freezing_window(()) is None


@settings(max_examples=200, deadline=None)
@given(st.integers(1_767_225_600, 1_830_297_600))  # 2026-01-01 .. 2028-01-01
def test_office_hours_window_matches_the_wall_clock(seconds: int) -> None:
    local = datetime.fromtimestamp(seconds, tz=ROME)
    expected = local.weekday() < 5 and 8 <= local.hour < 18
    assert bool(schedule.active_windows(OFFICE_WINDOW, at=float(seconds))) is expected


@pytest.mark.parametrize(
    ("when", "edge"),
    [
        ("2026-12-07T07:59:59", "2026-12-07T08:00:00"),  # Monday: the opening
        ("2026-12-07T08:00:00", "2026-12-07T18:00:00"),  # opened now: its end
        ("2026-12-07T12:00:00", "2026-12-07T18:00:00"),
        ("2026-12-04T18:00:00", "2026-12-07T08:00:00"),  # Friday's end: Monday's opening
        ("2026-12-05T12:00:00", "2026-12-07T08:00:00"),  # Saturday
        ("2026-10-23T18:30:00", "2026-10-26T08:00:00"),  # across the autumn DST change
    ],
)
def test_the_next_edge_is_the_next_opening_or_the_end_of_the_one_in_force(
    when: str, edge: str
) -> None:
    assert schedule.next_edge(OFFICE_WINDOW, at=at(when)) == at(edge)


def test_the_next_edge_of_several_windows_is_the_first_and_none_without_windows() -> None:
    both = schedule.parse_schedule({"windows": [OFFICE, NIGHT]})
    utc = ZoneInfo("UTC")
    # Monday 17:30 Rome is 16:30 UTC: the office closes before the night opens (22:00 UTC)
    assert schedule.next_edge(both, at=at("2026-12-07T17:30:00")) == at("2026-12-07T18:00:00")
    assert schedule.next_edge(both, at=at("2026-12-07T19:00:00")) == at("2026-12-07T22:00:00", utc)
    assert schedule.next_edge(models.Schedule(), at=at("2026-12-07T12:00:00")) is None


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1_767_225_600, 1_830_297_600),  # 2026-01-01 .. 2028-01-01
    st.floats(0.0, 1.0, exclude_max=True),
)
def test_no_window_opens_or_closes_before_the_next_edge(seconds: int, fraction: float) -> None:
    windows = schedule.parse_schedule({"windows": [OFFICE, NIGHT]})
    edge = schedule.next_edge(windows, at=float(seconds))
    assert edge is not None
    assert edge > seconds
    between = seconds + fraction * (edge - seconds - 0.001)  # edges are whole seconds
    now = schedule.active_windows(windows, at=float(seconds))
    assert schedule.active_windows(windows, at=between) == now
    # neither window's openings overlap, so the edge itself changes the windows in force
    assert schedule.active_windows(windows, at=edge) != now
