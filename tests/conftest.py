"""Shared test wiring: markers by directory, builders for nodes and pods.

Tests under ``tests/unit`` get the ``unit`` marker, tests under
``tests/integration`` the ``integration`` marker, so each group runs alone
(``pytest -m unit``, ``pytest -m integration``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

_GROUPS = ("unit", "integration", "chaos")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for group in _GROUPS:
            if group in parts:
                item.add_marker(getattr(pytest.mark, group))
