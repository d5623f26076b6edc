"""workflow/cache_tick.quiet_allowed: which settings let a steady tick run quiet
(docs/SPEC.md §9.10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from joulie_tasks import config
from joulie_tasks.workflow import cache_tick

WINDOW = """\
windows:
  - name: night
    cron: "0 22 * * *"
    duration: 8h
    policy:
      queue_hp_base_frac: 0.2
"""


@pytest.mark.parametrize(
    ("env", "allowed"),
    [
        ({}, True),
        ({"MIN_PROFILE_DWELL": "5m"}, True),  # a dwell only withholds a planned change
        ({"DOWNGRADE_BUDGET": "10%"}, True),  # so does a budget
        ({"POLICY_TYPE": "rule_swap_v1"}, False),  # its plan follows the clock
    ],
    ids=["default", "dwell", "budget", "rule-swap"],
)
def test_quiet_ticks_need_a_plan_time_alone_cannot_change(
    env: dict[str, str], allowed: bool
) -> None:
    assert cache_tick.quiet_allowed(config.read_settings(env)) is allowed


def test_a_schedule_window_allows_quiet_ticks_up_to_its_edges(tmp_path: Path) -> None:
    # (tick_end ends the converged record at the next edge: core.schedule.next_edge)
    path = tmp_path / "schedule.yaml"
    path.write_text(WINDOW)
    assert cache_tick.quiet_allowed(config.read_settings({"SCHEDULE_FILE": str(path)}))
