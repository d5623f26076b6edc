"""joulie-tasks' tests; ``REPO`` is the checkout they run in."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: The attribute on a test item holding its call-phase report (tests/conftest.py sets
#: it), read by the fixtures that keep a row only for a test that passed.
CALL_REPORT = "_call_report"
