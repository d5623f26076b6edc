"""The real Prometheus tools (Debian's ``prometheus`` package: ``promtool`` and the
``prometheus`` server). scripts/bootstrap.sh installs them; locally a missing binary
skips the test with one line, in CI (``CI=true``) it fails it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{binary} is required in CI (scripts/bootstrap.sh installs prometheus)")
        pytest.skip(f"{binary} is not installed (apt-get install prometheus)")
    return path


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require("promtool"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )
