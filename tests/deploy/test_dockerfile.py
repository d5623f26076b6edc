"""The Dockerfile and .dockerignore, parsed statically (no Docker engine here)."""

from __future__ import annotations

import fnmatch
import json
import re

import pytest

from tests.deploy import helpers


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", helpers.DOCKERFILE.read_text())
    result = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), args
    assert all(isinstance(v, str) for v in value), args
    return value


def _last(name: str) -> str:
    found = [args for word, args in instructions() if word == name]
    assert found, f"no {name} in the Dockerfile"
    return found[-1]


def _final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    start = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[start:]


def test_every_stage_builds_on_the_base_image_argument() -> None:
    """``BASE_IMAGE`` (default: the public python:3.11-slim) for every stage, so a machine
    with no registry passes a local Debian base (scripts/images.sh) and users change nothing."""
    text = helpers.DOCKERFILE.read_text()
    first_from = text.index("\nFROM ")
    assert "ARG BASE_IMAGE=python:3.11-slim" in text[:first_from]
    bases = [args.split()[0] for word, args in instructions() if word == "FROM"]
    assert len(bases) == 2
    assert all(b == "${BASE_IMAGE}" for b in bases), bases


def test_entrypoint_is_the_console_script_declared_in_pyproject() -> None:
    scripts = helpers.pyproject()["project"]["scripts"]
    entrypoint = _exec_form(_last("ENTRYPOINT"))
    assert len(entrypoint) == 1
    assert entrypoint[0] in scripts
    assert scripts[entrypoint[0]] == "joulie_tasks.cli.main:main"


def test_default_command_runs_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    cmd = _exec_form(_last("CMD"))
    assert cmd == ["worker"]
    assert helpers.run_cli(monkeypatch, cmd) == ("worker", [])


def test_runs_as_a_numeric_non_root_user() -> None:
    final = _final_stage()
    users = [(i, args) for i, (word, args) in enumerate(final) if word == "USER"]
    assert users, "the final stage sets no USER"
    index, user = users[-1]
    uid = user.split(":")[0]
    assert uid.isdigit(), f"USER {user}: use a numeric uid"
    assert int(uid) != 0, f"USER {user}: use a non-root uid"
    # Nothing after USER needs root (no RUN as that user installing packages).
    assert all(word != "RUN" for word, _ in final[index:])
    entry = next(i for i, (word, _) in enumerate(final) if word == "ENTRYPOINT")
    assert index < entry
    # Kubernetes runs the pods as that same uid.
    for component in helpers.OPERATOR_SERVICES:
        spec = helpers.deployment_for(component)["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsUser"] == int(uid), component


def test_installs_the_package_without_dev_dependencies() -> None:
    runs = " ".join(args for word, args in instructions() if word == "RUN")
    assert "pip" in runs
    assert "[dev]" not in runs
    assert "requirements-dev" not in runs
    assert not re.search(r"pip install[^&]*\s-e\s", runs), "no editable install in an image"
    # The build stage installs the package (not editable) into /opt/joulie; the runtime
    # stage copies that venv and installs nothing from the network.
    assert "/opt/joulie/bin/pip install --quiet ." in runs
    final = _final_stage()
    assert ("COPY", "--from=build /opt/joulie /opt/joulie") in final
    assert "pip" not in " ".join(args for word, args in final if word == "RUN")


def test_exposes_the_metrics_port() -> None:
    assert _last("EXPOSE").split() == [str(helpers.metrics_port())]


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.removeprefix("/").removeprefix("**/")
        parts = path.split("/")
        hit = any(
            fnmatch.fnmatch("/".join(parts[: i + 1]), pat) or fnmatch.fnmatch(parts[i], pat)
            for i in range(len(parts))
        )
        if hit:
            ignored = not negate
    return ignored


def test_every_copied_source_exists_and_is_not_docker_ignored() -> None:
    patterns = [
        line.strip()
        for line in (helpers.ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    copies = [args for word, args in instructions() if word == "COPY" and "--from=" not in args]
    assert copies
    for args in copies:
        *sources, _dest = args.split()
        for source in sources:
            assert (helpers.ROOT / source).exists(), f"COPY {source}: no such file"
            assert not _ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    # What must stay out of the build context.
    for path in (".venv", ".git", "tests", "deploy", ".env", "joulie_tasks/__pycache__"):
        assert _ignored(path, patterns), f"{path} should be in .dockerignore"


def test_worker_and_beat_readmes_say_how_the_container_runs_them() -> None:
    worker = (helpers.ROOT / "worker" / "README.md").read_text()
    beat = (helpers.ROOT / "beat" / "README.md").read_text()
    assert "joulie-tasks worker --concurrency=N" in worker
    assert "joulie-tasks beat" in beat
    assert (helpers.ROOT / "worker" / "main.py").is_file()
    assert (helpers.ROOT / "beat" / "main.py").is_file()
