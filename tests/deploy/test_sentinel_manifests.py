"""deploy/sentinel (optional kustomize component): Redis master + two replicas and three
Sentinels (quorum 2) with anti-affinity, replacing the single Redis; the operator's
settings point at the Sentinels. Every manifest validates against its kind's schema, the
component's patches give valid settings and objects, losing any one Redis server for
good leaves the replica the store's lock needs, and the worker's liveness probe runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate.utils
import pytest
import yaml

from joulie_tasks import config
from joulie_tasks.adapters import store
from joulie_tasks.core import sentinel
from tests.deploy import helpers

COMPONENT = helpers.DEPLOY / "sentinel"
K8S_VERSIONS = ("1.28", "1.33")


def _objects() -> list[dict[str, Any]]:
    return [
        doc
        for path in helpers.manifest_files(under=COMPONENT)
        if not helpers.is_kustomization(path)
        for doc in helpers.documents(path)
    ]


def _kustomization() -> dict[str, Any]:
    return helpers.documents(COMPONENT / "kustomization.yaml")[0]


def _patch_ops(kind: str, name: str) -> list[dict[str, Any]]:
    for patch in _kustomization()["patches"]:
        if patch["target"] == {"kind": kind, "name": name}:
            ops = yaml.safe_load(patch["patch"])
            assert isinstance(ops, list)
            return ops
    raise AssertionError(f"no patch for {kind}/{name}")


def _statefulset(component: str) -> dict[str, Any]:
    found = [d for d in _objects() if d["kind"] == "StatefulSet"]
    found = [d for d in found if d["metadata"]["name"] == component]
    assert len(found) == 1, component
    return found[0]


def test_the_component_lists_every_file_and_they_exist() -> None:
    data = _kustomization()
    assert data["kind"] == "Component"
    listed = {(COMPONENT / r).resolve() for r in data["resources"]}
    files = {p.resolve() for p in helpers.manifest_files(under=COMPONENT)}
    assert listed == files - {(COMPONENT / "kustomization.yaml").resolve()}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates_against_its_schema(version: str) -> None:
    for doc in _objects():
        kubernetes_validate.utils.validate(doc, version, strict=True)


@pytest.mark.parametrize(("component", "replicas"), [("redis-node", 3), ("redis-sentinel", 3)])
def test_replicas_and_anti_affinity(component: str, replicas: int) -> None:
    sts = _statefulset(component)
    assert sts["spec"]["replicas"] == replicas
    pod = sts["spec"]["template"]
    rules = pod["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert rules[0]["topologyKey"] == "kubernetes.io/hostname"
    assert rules[0]["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert sts["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    ctx = pod["spec"]["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["spec"]["containers"][0]
    assert container["image"].startswith("redis:7")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "memory" in container["resources"]["limits"]


def test_redis_nodes_persist_never_evict_and_rejoin_as_replicas() -> None:
    script = _statefulset("redis-node")["spec"]["template"]["spec"]["containers"][0]["args"][0]
    for flag in ("--appendonly yes", "--maxmemory-policy noeviction", "--replicaof"):
        assert flag in script
    assert "SENTINEL get-master-addr-by-name joulie" in script
    claim = _statefulset("redis-node")["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_sentinels_watch_the_master_by_the_name_the_operator_uses() -> None:
    script = _statefulset("redis-sentinel")["spec"]["template"]["spec"]["containers"][0]["args"][0]
    ops = {op["path"]: op["value"] for op in _patch_ops("ConfigMap", "joulie-tasks")}
    master = ops["/data/REDIS_SENTINEL_MASTER"]
    assert f"sentinel monitor {master} " in script
    assert " 2\n" in script.split(f"sentinel monitor {master} ", 1)[1]  # quorum 2 of 3


def test_losing_any_one_redis_server_for_good_leaves_a_replica_to_acknowledge_the_lock() -> None:
    servers = _statefulset("redis-node")["spec"]["replicas"]
    # after the failover: one of the survivors is the master, the others are replicas
    assert servers - 1 - 1 >= store.MIN_REPLICAS
    sentinels = _statefulset("redis-sentinel")["spec"]["replicas"]
    script = _statefulset("redis-sentinel")["spec"]["template"]["spec"]["containers"][0]["args"][0]
    quorum = int(script.split("sentinel monitor joulie ", 1)[1].split("\n", 1)[0].split()[-1])
    assert sentinels // 2 < quorum <= sentinels - 1  # a majority, and one Sentinel may be lost


def test_the_worker_liveness_probe_imports_what_it_uses() -> None:
    ops = _patch_ops("Deployment", "joulie-tasks-worker")
    (command,) = [op["value"] for op in ops if op["path"].endswith("/livenessProbe/exec/command")]
    assert command[:2] == ["python", "-c"]
    helpers.probe_imports_run(command[2])


def test_the_patched_configmap_is_a_valid_sentinel_configuration() -> None:
    data = dict(helpers.one("ConfigMap")["data"])
    for op in _patch_ops("ConfigMap", "joulie-tasks"):
        data[op["path"].removeprefix("/data/")] = op["value"]
    settings = config.read_settings(data)
    assert settings.uses_sentinel
    hosts = sentinel.parse_sentinel_url(settings.redis_url).hosts
    service = next(
        d
        for d in _objects()
        if d["metadata"]["name"] == "redis-sentinel" and d["kind"] == "Service"
    )
    port = service["spec"]["ports"][0]["port"]
    assert hosts == tuple((f"redis-sentinel-{i}.redis-sentinel", port) for i in range(3))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_builds_the_base_with_the_sentinel_component(tmp_path: Path) -> None:
    rel = Path(*[".."] * len(tmp_path.parts[1:])) / helpers.DEPLOY.relative_to("/")
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {rel}\ncomponents:\n  - {rel / 'sentinel'}\n"
    )
    built = helpers.kustomize(tmp_path)
    names = {(d["kind"], d["metadata"]["name"]) for d in built}
    assert ("Deployment", "redis") not in names
    assert ("Service", "redis") not in names
    assert ("PersistentVolumeClaim", "redis-data") not in names
    assert {("StatefulSet", "redis-node"), ("StatefulSet", "redis-sentinel")} <= names
    for doc in built:
        kubernetes_validate.utils.validate(doc, K8S_VERSIONS[-1], strict=True)
    cm = next(d for d in built if d["kind"] == "ConfigMap")
    assert config.read_settings(cm["data"]).uses_sentinel
    worker = next(d for d in built if d["metadata"]["name"] == "joulie-tasks-worker")
    probe = worker["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["exec"]
    assert probe["command"][:2] == ["python", "-c"]
    assert "app.control.ping" in probe["command"][2]


@pytest.mark.parametrize("component", ["redis-node", "redis-sentinel"])
def test_start_scripts_are_valid_shell(component: str) -> None:
    container = _statefulset(component)["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["sh", "-c"]
    done = subprocess.run(
        ["sh", "-n", "-c", container["args"][0]], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
