"""Shared loaders for the deployables' static checks (no Docker, no cluster, no network)."""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate.utils
import pytest
import yaml

from joulie_tasks import config
from joulie_tasks.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"

#: docs/SPEC.md §3: the variables (and the reference defaults) every deployable must carry.
SPEC_VARIABLES = (
    "RECONCILE_INTERVAL",
    "NODE_SELECTOR",
    "RESERVED_LABEL_KEY",
    "POWER_PROFILE_LABEL",
    "DRAINING_LABEL",
    "POLICY_TYPE",
    "STATIC_HP_FRAC",
    "QUEUE_HP_BASE_FRAC",
    "QUEUE_HP_MIN",
    "QUEUE_HP_MAX",
    "QUEUE_PERF_PER_HP_NODE",
    "PERFORMANCE_CAP_WATTS",
    "ECO_CAP_WATTS",
    "METRICS_ADDR",
)

#: The compose services that run the operator image, and the subcommand each runs.
OPERATOR_SERVICES = {
    "worker": "worker",
    "beat": "beat",
    "watcher": "watch",
    "metrics": "metrics",
}


def settings_env_names() -> set[str]:
    """Every environment variable the operator reads: Settings field names upper-cased."""
    return {name.upper() for name in config.Settings.model_fields}


@functools.cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@functools.cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines as compose's env_file reads them (no quotes, # comments)."""
    env: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}:{number}: not KEY=VALUE: {raw!r}"
        assert key, f"{path.name}:{number}: empty name"
        assert key == key.strip(), f"{path.name}:{number}: bad name {key!r}"
        assert key not in env, f"{path.name}:{number}: {key} set twice"
        env[key] = value
    return env


def load_json(name: str) -> dict[str, Any]:
    data = json.loads((SCHEMAS / name).read_text())
    assert isinstance(data, dict)
    return data


#: Optional components with their own tests (test_sentinel_manifests.py,
#: test_schedule_manifests.py): they replace or patch base objects, so the base's
#: one-of-each checks do not apply to them.
REPLACING_COMPONENTS = ("sentinel", "schedule")


def manifest_files(*, under: Path | None = None) -> list[Path]:
    """Manifests of the base and its additive components (or of one directory)."""
    if under is not None:
        return sorted(p for p in under.rglob("*") if p.suffix in (".yaml", ".yml"))
    skipped = tuple(DEPLOY / c for c in REPLACING_COMPONENTS)
    return sorted(
        p
        for p in DEPLOY.rglob("*")
        if p.suffix in (".yaml", ".yml") and not any(d in p.parents for d in skipped)
    )


def is_kustomization(path: Path) -> bool:
    return path.name in ("kustomization.yaml", "kustomization.yml", "Kustomization")


@functools.cache
def _documents(path: Path) -> tuple[dict[str, Any], ...]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert all(isinstance(d, dict) for d in docs), f"{path}: a document is not a mapping"
    return tuple(docs)


def documents(path: Path) -> list[dict[str, Any]]:
    return list(_documents(path))


def objects() -> list[tuple[Path, dict[str, Any]]]:
    """Every Kubernetes object under deploy/ (kustomization files excluded)."""
    return [
        (path, doc)
        for path in manifest_files()
        if not is_kustomization(path)
        for doc in documents(path)
    ]


def find(kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        doc
        for _, doc in objects()
        if doc.get("kind") == kind and (name is None or doc["metadata"]["name"] == name)
    ]


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def deployment_for(component: str) -> dict[str, Any]:
    found = [
        d
        for d in find("Deployment")
        if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        == component
    ]
    assert len(found) == 1, f"expected one Deployment for component {component}"
    return found[0]


def metrics_port() -> int:
    """The port METRICS_ADDR defaults to (docs/SPEC.md §3)."""
    default = config.Settings.model_fields["metrics_addr"].default
    return config.host_port(default)[1]


def run_cli(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> tuple[str, list[str]]:
    """What ``joulie-tasks ARGV`` would run: (handler subcommand, arguments for Celery).

    Goes through ``cli.main`` itself (the console script), with the handlers replaced.
    """
    ran: list[tuple[str, list[str]]] = []
    for name in ("worker", "beat", "metrics", "reconcile", "watch"):

        def handler(settings: config.Settings, args: Any, name: str = name) -> int:
            ran.append((name, list(getattr(args, "celery_args", []) or [])))
            return 0

        monkeypatch.setattr(cli, f"cmd_{name}", handler)
    monkeypatch.setattr(cli, "_setup_logging", lambda level: None)
    monkeypatch.setattr(config, "load_settings", lambda *a, **k: config.Settings())
    assert cli.main(argv) == 0
    assert len(ran) == 1
    return ran[0]


def probe_imports_run(program: str) -> None:
    """Run the import statements of a ``python -c`` probe (the rest needs a broker)."""
    module = ast.parse(program)
    imports = [n for n in module.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert imports
    exec(compile(ast.Module(body=imports, type_ignores=[]), "<probe>", "exec"), {})


#: CRD kinds (not in the Kubernetes schemas): validated with the vendored minimal schemas.
CUSTOM_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
}


def validate(doc: dict[str, Any], version: str) -> None:
    """Validate one object strictly (unknown fields fail), as deploy/ is validated."""
    custom = CUSTOM_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
    if custom is not None:
        schema = load_json(custom)
        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.Draft202012Validator(schema).validate(doc)
        return
    kubernetes_validate.utils.validate(doc, version, strict=True)


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize`` builds from ``directory``."""
    done = subprocess.run(
        ["kubectl", "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]
