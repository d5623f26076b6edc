"""The compose tier: the project's own docker-compose.yml, really up, on podman.

``stack`` builds the images (``scripts/images.sh --ci``: the operator image and the
stand-ins for the images no registry here serves), starts podman's Docker API
(``compose/podman.sh``) and brings ``docker-compose.yml`` + ``compose/ci.yml`` up under a
project name of its own, once per module; the tests then talk to the running stack the
way a user does: ``docker-compose`` commands, the published ports (the control plane
through the official client, Redis, the metrics endpoint). ``down -v`` at the end.

Where podman or docker-compose is missing the tier is skipped with one line; under ``CI``
it fails instead (``.ci/run`` installs both), so it can never vanish silently.

Each test states its row through the ``row`` fixture; when the whole tier passes with
``JOULIE_WRITE_RELIABILITY=1`` the rows replace the compose section of
docs/RELIABILITY.md (the chaos tables and the failover sections are kept).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests import CALL_REPORT
from tests.compose.stack import ROOT, Stack, podman_env, require_tools, running

RELIABILITY = ROOT / "docs" / "RELIABILITY.md"
SECTION = "## The compose stack (docker-compose on podman)"
#: (test id, [fault, what was done, what the operator did]) of every passed test.
_ROWS: dict[str, list[str]] = {}


@pytest.fixture
def row(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """The test appends fault, action and behaviour; kept only if the test passed."""
    cells: list[str] = []
    yield cells
    report = getattr(request.node, CALL_REPORT, None)
    if report is not None and report.passed and cells:
        _ROWS[request.node.nodeid] = cells


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("JOULIE_WRITE_RELIABILITY") != "1" or not _ROWS:
        return
    if exitstatus != 0 or session.testsfailed or session.config.option.keyword:
        print(f"\n{SECTION}: not written (the compose tier did not wholly pass)")
        return
    lines = [
        SECTION,
        "",
        "Written by the compose tier (`JOULIE_WRITE_RELIABILITY=1 .venv/bin/pytest -m compose`,",
        "tests/compose): the project's own docker-compose.yml with compose/ci.yml, on podman,",
        "images built by `scripts/images.sh --ci`. Every value comes from the run itself;",
        "*state lost* reads `none` only because the test's checks of the FSM, the audit",
        "stream, the node labels and the NodePowerProfiles all passed.",
        "",
        "| # | fault | what was done | what the operator did | state lost |",
        "|---|---|---|---|---|",
    ]
    ordered = list(_ROWS)  # in the order the tests ran
    for number, nodeid in enumerate(ordered, 1):
        cells = [c.replace("|", "\\|") for c in _ROWS[nodeid]]
        lines.append(f"| {number} | " + " | ".join(cells) + " | none |")
    text = "\n".join(lines) + "\n"
    current = RELIABILITY.read_text()
    before, found, rest = current.partition(SECTION)
    after = rest.partition("\n## ")[2] if found else ""
    RELIABILITY.write_text(
        (before.rstrip("\n") + "\n\n" if found else current.rstrip("\n") + "\n\n")
        + text
        + ("\n## " + after if after else "")
    )
    print(f"\nwrote {SECTION!r} in docs/RELIABILITY.md ({len(ordered)} rows)")


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    """The images built (``scripts/images.sh --ci``, cached by podman) and podman's
    Docker API: the environment docker-compose needs (DOCKER_HOST, CONTAINERS_CONF)."""
    assets = require_tools()
    env = podman_env()
    done = subprocess.run(
        ["bash", "scripts/images.sh", "--ci"],
        cwd=ROOT,
        env={**os.environ, **env, "KUBEBUILDER_ASSETS": str(assets)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/images.sh --ci failed:\n{done.stdout}\n{done.stderr}")
    print(f"compose: images\n{done.stdout}")
    return env


@pytest.fixture(scope="module")
def stack(images: dict[str, str]) -> Iterator[Stack]:
    """The stack, up with three workers; ``stack.up_started``: when ``up`` began."""
    with running(Stack(f"joulie-ci-{os.getpid()}", images), "--scale", "worker=3") as s:
        yield s
