"""The operator's wheel — what the Docker image installs — carries the operator only.

Built for real with ``pip wheel . --no-deps`` (the Dockerfile's build stage installs the
same package, not editable, into the venv the image carries), then listed: no emulator, demo or
process-harness module, no test bed package.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests import REPO

FORBIDDEN = ("emulator", "demo", "procs", "controlplane", "joulie_testbed", "png")


def test_the_operator_wheel_holds_no_test_bed_module(tmp_path: Path) -> None:
    # Given the operator's wheel, built as the Dockerfile builds it
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = tmp_path.glob("joulie_tasks-*.whl")

    # When its files are listed
    names = zipfile.ZipFile(wheel).namelist()

    # Then there is only the operator package (and its metadata), without test bed modules
    assert {n.split("/")[0] for n in names} == {
        "joulie_tasks",
        wheel.name.split("-py")[0] + ".dist-info",
    }
    assert "joulie_tasks/cli/main.py" in names
    assert "joulie_tasks/core/models.py" in names
    assert [n for n in names if any(word in n for word in FORBIDDEN)] == []


def test_the_dockerfile_installs_that_wheel() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "/opt/joulie/bin/pip install --quiet ." in text
    assert "COPY joulie_tasks ./joulie_tasks" in text
    assert "testbed" not in text
