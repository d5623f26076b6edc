"""Settings of docs/SPEC.md §12: MIN_PROFILE_DWELL(_UPGRADES), DOWNGRADE_BUDGET(_WINDOW),
SCHEDULE_FILE — defaults off, one line per bad value, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from joulie_tasks import config, errors
from joulie_tasks.core import models

SCHEDULE = """\
windows:
  - name: office-hours
    cron: "0 8 * * 1-5"
    duration: 10h
    timezone: Europe/Rome
    freeze_downgrades: true
  - name: night
    cron: "0 22 * * *"
    duration: 8h
    policy:
      queue_hp_base_frac: 0.2
"""


def test_damping_is_off_by_default() -> None:
    s = config.read_settings({})
    assert s.damping_params() == models.DampingParams()
    assert s.damping_params().min_dwell_s == 0
    assert not s.damping_params().has_budget
    assert s.schedule == models.Schedule()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MIN_PROFILE_DWELL": "5m"}, {"min_dwell_s": 300.0}),
        ({"MIN_PROFILE_DWELL_UPGRADES": "true"}, {"dwell_upgrades": True}),
        ({"DOWNGRADE_BUDGET": "10"}, {"budget_count": 10}),
        ({"DOWNGRADE_BUDGET": " 10% "}, {"budget_percent": 10.0}),
        ({"DOWNGRADE_BUDGET": "0"}, {"budget_count": 0}),
        ({"DOWNGRADE_BUDGET_WINDOW": "1h"}, {"budget_window_s": 3600.0}),
    ],
    ids=["dwell", "dwell-upgrades", "count", "percent", "zero", "window"],
)
def test_damping_settings_reach_the_core(env: dict[str, str], expected: dict[str, object]) -> None:
    params = config.read_settings(env).damping_params()
    for name, value in expected.items():
        assert getattr(params, name) == value


INVALID = [
    ("MIN_PROFILE_DWELL", "5", "Go duration"),
    ("MIN_PROFILE_DWELL", "-1m", "≥ 0"),
    ("MIN_PROFILE_DWELL_UPGRADES", "maybe", "bool"),
    ("DOWNGRADE_BUDGET", "ten", "a count (10) or a percentage"),
    ("DOWNGRADE_BUDGET", "-1", "a count (10) or a percentage"),
    ("DOWNGRADE_BUDGET", "120%", "a count (10) or a percentage"),
    ("DOWNGRADE_BUDGET", "1.5", "a count (10) or a percentage"),
    ("DOWNGRADE_BUDGET_WINDOW", "0s", "> 0"),
    ("SCHEDULE_FILE", "/nonexistent/schedule.yaml", "readable YAML file"),
]


@pytest.mark.parametrize(
    ("name", "value", "expected"), INVALID, ids=[f"{n}={v!r}" for n, v, _ in INVALID]
)
def test_an_invalid_damping_value_is_one_line(name: str, value: str, expected: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        config.read_settings({name: value})
    (line,) = info.value.lines
    assert line.startswith(f"{name}={value!r}: expected ")
    assert expected in line


def test_a_schedule_file_is_read_once_at_start_up(tmp_path: Path) -> None:
    path = tmp_path / "schedule.yaml"
    path.write_text(SCHEDULE)
    s = config.read_settings({"SCHEDULE_FILE": str(path)})
    path.unlink()  # already read: the settings keep the schedule
    assert [w.name for w in s.schedule.windows] == ["office-hours", "night"]
    assert s.schedule.windows[0].freeze_downgrades
    assert s.schedule.windows[1].policy.queue_hp_base_frac == 0.2


def test_an_empty_schedule_file_variable_means_no_schedule() -> None:
    assert config.read_settings({"SCHEDULE_FILE": ""}).schedule == models.Schedule()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            SCHEDULE.replace('"0 22 * * *"', '"0 22 * *"'),
            "expected a valid schedule; window 'night', field 'cron': expected a five-field "
            "cron expression such as '0 8 * * 1-5', got '0 22 * *'",
        ),
        (
            SCHEDULE.replace("Europe/Rome", "Europe/Atlantis"),
            "window 'office-hours', field 'timezone'",
        ),
        (SCHEDULE.replace("duration: 8h", "duration: 8"), "window 'night', field 'duration'"),
        ("windows: [", "expected a YAML file (not parsable at line 1)"),
    ],
    ids=["cron", "timezone", "duration", "not-yaml"],
)
def test_a_bad_schedule_exits_2_with_one_line_naming_window_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = tmp_path / "schedule.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit) as info:
        config.load_settings({"SCHEDULE_FILE": str(path)})
    assert info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"joulie-tasks: invalid configuration: SCHEDULE_FILE='{path}': ")
    assert expected in line
