"""The chaos group: the reliability-table recorder (the process fixtures are tests/conftest.py's).

Every test under ``tests/chaos`` is marked ``chaos`` (tests/conftest.py, by
directory). Each one records one row through the ``reliability`` fixture; when the
whole group runs with ``JOULIE_WRITE_RELIABILITY=1`` (scripts/reliability.sh) and
passes, the session writes docs/RELIABILITY.md from those rows. Partial or failing
runs never overwrite the published table.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from joulie_tasks.adapters import store
from joulie_testbed.emulator import Emulator
from joulie_testbed.procs import RedisServer, Stack
from joulie_testbed.ticks import TickClient
from tests import CALL_REPORT
from tests.chaos.reliability import Row, render
from tests.chaos.scenario import Chaos

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "docs" / "RELIABILITY.md"
WRITE_ENV = "JOULIE_WRITE_RELIABILITY"
FAILOVER_HEADING = "## Redis failover time (Sentinel)"
#: Per-case limit: outages and lock expiries take tens of seconds on a busy 2-core box.
CASE_TIMEOUT_S = 180


_ROWS: dict[str, Row] = {}
_ORDER: dict[str, int] = {}


#: Table order follows the issue's list, not the alphabetical order of the files.
_MODULES = (
    "test_workers",
    "test_redis",
    "test_api",
    "test_lock",
    "test_sentinel",
    "test_nodes",
    "test_hostile",
    "test_config",
    "test_security",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for index, item in enumerate(items):
        if here not in Path(str(item.fspath)).parents:
            continue
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(CASE_TIMEOUT_S))
        module = Path(str(item.fspath)).stem
        rank = _MODULES.index(module) if module in _MODULES else len(_MODULES)
        _ORDER[item.nodeid] = rank * 10_000 + index


@pytest.fixture
def redis_server(
    tmp_path: Path, request: pytest.FixtureRequest, redis_binary: None
) -> Iterator[RedisServer]:
    """redis-server with options from indirect parametrisation (``appendonly``,
    ``password``, ``tls``, and ``started=False`` to leave it down at first)."""
    options = dict(getattr(request, "param", {}))
    started = options.pop("started", True)
    server = RedisServer(tmp_path / "redis", **options)
    if started:
        server.start()
    yield server
    server.stop()


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Iterator[Row]:
    """The test fills in its row; it is kept only if the test passed."""
    row = Row(order=_ORDER.get(request.node.nodeid, 0))
    started = time.monotonic()
    yield row
    row.seconds = time.monotonic() - started
    report = getattr(request.node, CALL_REPORT, None)
    if report is not None and report.passed and row.fault:
        merge = row.extra.get("merge")
        if merge is None:
            _ROWS[request.node.nodeid] = row
        elif merge in _ROWS:  # one table row for a parametrised family of cases
            _ROWS[merge].action += ", " + row.action
        else:
            _ROWS[merge] = row


@pytest.fixture
def chaos(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore, reliability: Row
) -> Chaos:
    """The test's real parts and its row, with the common start (tests/chaos/scenario.py)."""
    return Chaos(stack=stack, emulator=emulator, ticks=ticks, state=state, row=reliability)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get(WRITE_ENV) != "1":
        return
    if not _is_whole_group(session):
        print(f"\n{TABLE.relative_to(REPO)} not written: not the whole chaos group")
        return
    if exitstatus != 0 or session.testsfailed:
        print(f"\n{TABLE.relative_to(REPO)} not written: the chaos group did not pass")
        return
    if not _ROWS:
        return
    TABLE.parent.mkdir(exist_ok=True)
    # bench/failover.py owns a section after the table: keep it.
    kept = TABLE.read_text().partition(FAILOVER_HEADING)[1:] if TABLE.exists() else ("", "")
    table = render(sorted(_ROWS.values(), key=lambda r: r.order))
    TABLE.write_text(table + ("\n" + "".join(kept) if kept[0] else ""))
    print(f"\nwrote {TABLE.relative_to(REPO)} ({len(_ROWS)} faults)")


def _is_whole_group(session: pytest.Session) -> bool:
    """No -k/--deselect/--lf filter, and every path argument contains tests/chaos whole."""
    option = session.config.option
    if option.keyword or getattr(option, "deselect", None) or getattr(option, "lf", False):
        return False
    here = Path(__file__).parent
    for arg in session.config.args:
        path = Path(arg.split("::")[0]).resolve()
        if "::" in arg or not (path == here or path in here.parents):
            return False
    return True
