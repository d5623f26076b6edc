"""``joulie-tasks demo`` comes from the test bed through an entry point; without it, one line."""

from __future__ import annotations

import importlib.metadata

import pytest

from joulie_tasks.cli import main as cli


def test_demo_without_the_test_bed_says_in_one_line_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given no distribution registers a subcommand (the test bed is not installed)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **_: [])

    # When the demo is asked for, with options
    code = cli.main(["demo", "--ticks", "3"])

    # Then exit 1 and one line naming the test bed
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILURE
    assert err.count("\n") == 1
    assert "pip install -e ./testbed" in err


def test_the_installed_test_bed_registers_the_demo() -> None:
    names = {e.name for e in importlib.metadata.entry_points(group=cli.COMMANDS_GROUP)}
    assert "demo" in names


@pytest.mark.parametrize(
    ("argv", "loads"),
    [
        (["worker", "--concurrency=2"], False),
        (["--log-level", "WARNING", "beat"], False),
        (["status"], False),
        ([], False),
        (["demo", "--ticks", "3"], True),
        (["--log-level", "INFO", "demo"], True),
    ],
    ids=["worker", "beat-after-option", "status", "nothing", "demo", "demo-after-option"],
)
def test_plugins_are_loaded_only_for_a_command_that_is_not_ours(
    argv: list[str], loads: bool
) -> None:
    # (an operator process never imports the test bed and its plotting library)
    assert cli._asks_for_a_plugin(argv) is loads
