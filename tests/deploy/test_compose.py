"""docker-compose.yml and .env.example, checked statically (no Docker engine here)."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from typing import Any

import jsonschema
import pytest
import yaml

from joulie_tasks import config
from tests.deploy import helpers

#: Variables that are not Settings fields, each with the reason it may appear.
COMPOSE_ONLY_VARIABLES = {
    "K3S_KUBECONFIG_OUTPUT": "k3s: where the server writes its kubeconfig (shared volume)",
    "K3S_KUBECONFIG_MODE": "k3s: file mode of that kubeconfig, readable by the operator",
    "OPERATOR_KUBECONFIG": "bootstrap: where it writes the kubeconfig rewritten for k3s:6443",
    "FAKE_NODES": "bootstrap: how many fake Node objects to create in k3s",
}


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = helpers.compose()["services"]
    return result


def _env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _validator() -> jsonschema.protocols.Validator:
    schema = helpers.load_json("compose-spec.json")
    # Its $schema URI is not one jsonschema knows: say which draft explicitly.
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def test_compose_file_validates_against_the_compose_schema() -> None:
    errors = sorted(_validator().iter_errors(helpers.compose()), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_compose_schema_rejects_a_broken_file() -> None:
    broken = copy.deepcopy(helpers.compose())
    broken["services"]["worker"]["depends_on"]["redis"]["condition"] = "service_ready"
    broken["services"]["redis"]["helthcheck"] = {}
    assert len(list(_validator().iter_errors(broken))) >= 2


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_config_accepts_the_file() -> None:
    """The real parser too (v1 ``docker-compose config`` needs no engine)."""
    done = subprocess.run(
        ["docker-compose", "-f", str(helpers.COMPOSE_FILE), "config", "-q"],
        cwd=helpers.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_every_operator_command_is_a_real_subcommand(monkeypatch: pytest.MonkeyPatch) -> None:
    operator_services = {
        name: svc for name, svc in services().items() if svc.get("image") == "joulie-tasks:local"
    }
    assert set(operator_services) == set(helpers.OPERATOR_SERVICES)
    for name, svc in operator_services.items():
        command = svc["command"]
        assert isinstance(command, list), f"{name}: use the exec (list) form"
        handler, _ = helpers.run_cli(monkeypatch, command)
        assert handler == helpers.OPERATOR_SERVICES[name], name
    assert services()["worker"]["command"] == ["worker", "--concurrency=2"]
    assert helpers.run_cli(monkeypatch, ["worker", "--concurrency=2"]) == (
        "worker",
        ["--concurrency=2"],
    )


def test_operator_services_share_one_build_and_one_env_file() -> None:
    for name in helpers.OPERATOR_SERVICES:
        svc = services()[name]
        assert svc["build"]["context"] == "."
        assert svc["build"]["dockerfile"] == "Dockerfile"
        assert svc["env_file"] == [".env.example"], name
        assert (helpers.ROOT / svc["env_file"][0]).is_file()


def test_every_variable_is_a_setting_or_a_documented_compose_variable() -> None:
    known = helpers.settings_env_names()
    for key in helpers.read_env_file(helpers.ENV_EXAMPLE):
        assert key in known, f".env.example: {key} is not a Settings field"
    for name, svc in services().items():
        for key in _env_of(svc):
            assert key in known or key in COMPOSE_ONLY_VARIABLES, (
                f"{name}: {key} is neither a Settings field nor in COMPOSE_ONLY_VARIABLES"
            )


def test_env_example_has_every_spec_variable_with_its_default() -> None:
    env = helpers.read_env_file(helpers.ENV_EXAMPLE)
    missing = [v for v in helpers.SPEC_VARIABLES if v not in env]
    assert not missing, f".env.example lacks {missing}"
    settings = config.read_settings(env)  # raises ConfigError on any invalid value
    for var in helpers.SPEC_VARIABLES:
        field = var.lower()
        default = config.Settings.model_fields[field].default
        assert getattr(settings, field) == default, f"{var}={env[var]!r} is not the default"


def test_env_example_connects_to_the_compose_services() -> None:
    env = helpers.read_env_file(helpers.ENV_EXAMPLE)
    assert env["REDIS_URL"].startswith("redis://redis:6379/")
    assert "redis" in services()


def test_healthchecks_and_start_order() -> None:
    svcs = services()
    for name in ("redis", "k3s"):
        assert svcs[name]["healthcheck"]["test"][0] == "CMD", name
    assert svcs["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    for name in helpers.OPERATOR_SERVICES:
        assert svcs[name]["depends_on"] == {
            "redis": {"condition": "service_healthy"},
            "bootstrap": {"condition": "service_completed_successfully"},
        }, name
    assert svcs["bootstrap"]["depends_on"] == {"k3s": {"condition": "service_healthy"}}
    assert svcs["bootstrap"]["restart"] == "no"
    # Every service_healthy dependency has a healthcheck to wait for.
    for name, svc in svcs.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in svcs[dep], f"{name} waits for {dep}'s healthcheck"
            if cond["condition"] == "service_completed_successfully":
                assert svcs[dep].get("restart") == "no", f"{dep} must be one-shot"


def test_redis_keeps_its_data_and_never_evicts() -> None:
    redis = services()["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    pairs = dict(zip(command[1::2], command[2::2], strict=True))
    assert pairs["--appendonly"] == "yes"
    assert pairs["--maxmemory-policy"] == "noeviction"
    assert redis["image"].startswith("redis:7")
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == "/data"
    assert volume in helpers.compose()["volumes"]


def test_workers_and_beats_scale() -> None:
    """``--scale worker=N`` needs no container_name and no fixed host port."""
    for name in ("worker", "beat"):
        svc = services()[name]
        assert "container_name" not in svc, name
        assert "ports" not in svc, name
    assert services()["beat"]["deploy"]["replicas"] == 1


def test_metrics_port_is_published() -> None:
    port = helpers.metrics_port()
    # The host port is METRICS_PORT (default the same port; the compose tests pick a free one).
    assert services()["metrics"]["ports"] == [f"${{METRICS_PORT:-{port}}}:{port}"]


def test_kubeconfig_is_rewritten_for_the_k3s_service_and_mounted_read_only() -> None:
    svcs = services()
    env = helpers.read_env_file(helpers.ENV_EXAMPLE)
    k3s, bootstrap = svcs["k3s"], svcs["bootstrap"]
    k3s_env, boot_env = _env_of(k3s), _env_of(bootstrap)
    # k3s writes its kubeconfig (server https://127.0.0.1:6443) into the shared volume...
    assert k3s["privileged"] is True
    assert k3s["image"].startswith("rancher/k3s:")
    assert k3s["command"][0] == "server"
    assert any(a.startswith("--disable=traefik") for a in k3s["command"])
    assert "--tls-san=k3s" in k3s["command"], "the API certificate must be valid for k3s"
    assert k3s_env["K3S_KUBECONFIG_MODE"] == "644"
    written = k3s_env["K3S_KUBECONFIG_OUTPUT"]
    assert boot_env["K3S_KUBECONFIG_OUTPUT"] == written
    # ...bootstrap rewrites it for https://k3s:6443 into the file the operator uses...
    assert boot_env["OPERATOR_KUBECONFIG"] == env["KUBECONFIG"] != written
    script = (helpers.ROOT / "compose" / "bootstrap.sh").read_text()
    assert "https://k3s:6443" in script
    assert "127.0.0.1:6443" in script
    # ...in a volume that k3s and bootstrap write and the operator only reads.
    kube_dir = env["KUBECONFIG"].rsplit("/", 1)[0]
    assert written.rsplit("/", 1)[0] == kube_dir
    assert f"kubeconfig:{kube_dir}" in k3s["volumes"]
    assert f"kubeconfig:{kube_dir}" in bootstrap["volumes"]
    for name in helpers.OPERATOR_SERVICES:
        assert svcs[name]["volumes"] == [f"kubeconfig:{kube_dir}:ro"], name
    assert "kubeconfig" in helpers.compose()["volumes"]


def test_bootstrap_mounts_exist_and_apply_the_crd() -> None:
    bootstrap = services()["bootstrap"]
    assert bootstrap["image"] == services()["k3s"]["image"], "reuse k3s's image (sh + kubectl)"
    mounts = {}
    for volume in bootstrap["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[target] = source
        if source.startswith("./"):
            assert (helpers.ROOT / source).exists(), source
    script_target = bootstrap["entrypoint"][-1]
    assert mounts[script_target] == "./compose/bootstrap.sh"
    assert mounts["/manifests/crd"] == "./deploy/crd"
    assert (helpers.DEPLOY / "crd" / "nodepowerprofiles.yaml").is_file()
    assert (helpers.DEPLOY / "crd" / "nodetwins.yaml").is_file()
    script = (helpers.ROOT / "compose" / "bootstrap.sh").read_text()
    assert "/manifests/crd/nodepowerprofiles.yaml" in script
    assert "/manifests/crd/nodetwins.yaml" in script
    assert (helpers.DEPLOY / "crd" / "nodehardwares.yaml").is_file()
    assert "/manifests/crd/nodehardwares.yaml" in script
    assert "joulie.io/managed=true" in script


@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh")
def test_bootstrap_script_is_valid_sh() -> None:
    script = helpers.ROOT / "compose" / "bootstrap.sh"
    done = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_every_operator_service_runs_on_a_read_only_root_with_a_tmpfs() -> None:
    for name in helpers.OPERATOR_SERVICES:
        svc = services()[name]
        assert svc.get("read_only") is True, name
        assert svc.get("tmpfs") == ["/tmp"], name


def test_output_api_comes_from_the_shell_with_the_settings_default() -> None:
    # Every operator role reads it the same way: ${OUTPUT_API:-<default>} over the env
    # file, so `OUTPUT_API=nodetwin docker compose up` switches the whole stack.
    default = config.Settings.model_fields["output_api"].default.value
    assert helpers.read_env_file(helpers.ENV_EXAMPLE)["OUTPUT_API"] == default
    for name in helpers.OPERATOR_SERVICES:
        value = _env_of(services()[name]).get("OUTPUT_API")
        assert value == f"${{OUTPUT_API:-{default}}}", name
        assert re.fullmatch(r"\$\{OUTPUT_API:-(\w+)\}", value)


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
@pytest.mark.parametrize("shell", [None, "nodetwin", "both"])
def test_docker_compose_config_resolves_output_api_from_the_shell(shell: str | None) -> None:
    """The real parser's interpolation (``docker-compose config`` needs no engine)."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME")}
    if shell is not None:
        env["OUTPUT_API"] = shell
    done = subprocess.run(
        ["docker-compose", "-f", str(helpers.COMPOSE_FILE), "config"],
        cwd=helpers.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    resolved = yaml.safe_load(done.stdout)["services"]
    expected = shell or config.Settings.model_fields["output_api"].default.value
    for name in helpers.OPERATOR_SERVICES:
        assert _env_of(resolved[name])["OUTPUT_API"] == expected, name
    config.read_settings({"OUTPUT_API": expected})  # a value the operator accepts
