"""The failover benchmark's pure parts (bench/failover.py): rendering both sections
(master restarted at once, master not restarted) and writing each one into
docs/RELIABILITY.md without touching the table or the other section. The benchmark
itself is not run here (it measures; it is not a test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import failover

ROWS: list[failover.Round] = [
    (2.0, 6.0, 1, ["completed"]),
    (3.0, 9.0, 2, ["failed", "completed"]),
    (2.5, 7.0, 3, ["completed"]),
]


def test_the_no_restart_section_names_its_command_and_the_median_and_worst() -> None:
    text = failover.render(ROWS, 24, [], restart=False, note=" Loaded machine.")
    assert text.startswith(failover.HEADING_NO_RESTART + "\n")
    assert "`.venv/bin/python -m bench.failover --no-restart -n 3 --write`" in text
    assert "| next completed tick | 7.00 s | 9.00 s |" in text
    assert "stays dead" in text
    assert "Loaded machine." in text
    assert "3.0/9.0 (failed, completed)" in text


def test_each_section_is_replaced_in_place_and_the_rest_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = tmp_path / "RELIABILITY.md"
    monkeypatch.setattr(failover, "TABLE", table)
    table.write_text("# Reliability\n\n| # | fault |\n")
    old = failover.render(ROWS, 1, [])
    failover.write_section(old)
    failover.write_section(failover.render(ROWS, 2, [], restart=False))
    # When the first section is measured again, the second one stays after it
    failover.write_section(failover.render(ROWS[:2], 3, []))
    text = table.read_text()
    assert text.startswith("# Reliability\n\n| # | fault |\n\n" + failover.HEADING + "\n")
    assert text.count(failover.HEADING + "\n") == 1
    assert text.count(failover.HEADING_NO_RESTART) == 1
    assert text.index(failover.HEADING + "\n") < text.index(failover.HEADING_NO_RESTART)
    assert "-n 2 --write" in text  # the new first section
    assert old not in text
    assert "--no-restart -n 3 --write" in text  # the second one, kept
