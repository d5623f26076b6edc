"""deploy/ (kustomize): every manifest parses, validates against its kind's schema, and
the pieces fit together (selectors, ports, settings, persistence, security)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from joulie_tasks import config
from tests.deploy import helpers

#: Kubernetes versions the built-in kinds are validated against (oldest supported, newest).
K8S_VERSIONS = ("1.28", "1.33")

EXPECTED_KINDS = {
    "Namespace",
    "CustomResourceDefinition",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "ConfigMap",
    "PersistentVolumeClaim",
    "Deployment",
    "Service",
    "ServiceMonitor",
}


def _rel(path: Path) -> str:
    return str(path.relative_to(helpers.ROOT))


OBJECTS = [
    pytest.param(doc, id=f"{_rel(path)}:{doc.get('kind')}/{doc.get('metadata', {}).get('name')}")
    for path, doc in helpers.objects()
]


def test_every_manifest_parses_and_names_its_object() -> None:
    files = helpers.manifest_files()
    assert files
    for path in files:
        docs = helpers.documents(path)
        assert docs, f"{_rel(path)} is empty"
        for doc in docs:
            assert {"apiVersion", "kind"} <= set(doc), _rel(path)
            if not helpers.is_kustomization(path):
                assert doc["metadata"]["name"], _rel(path)
    assert {doc["kind"] for _, doc in helpers.objects()} == EXPECTED_KINDS


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("doc", OBJECTS)
def test_manifest_validates_against_the_schema_of_its_kind(
    doc: dict[str, Any], version: str
) -> None:
    helpers.validate(doc, version)


@pytest.mark.parametrize(
    ("kind", "mutate"),
    [
        ("Deployment", lambda d: d["spec"].update(replica=2)),
        ("Deployment", lambda d: d["spec"]["template"]["spec"]["containers"][0].update(args=1)),
        ("ClusterRole", lambda d: d["rules"][0].update(verb=["get"])),
        ("ServiceMonitor", lambda d: d["spec"]["endpoints"][0].update(prot="metrics")),
    ],
)
def test_the_schemas_reject_typos(kind: str, mutate: Any) -> None:
    doc = copy.deepcopy(helpers.find(kind)[0])
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError):
        helpers.validate(doc, K8S_VERSIONS[-1])


# --- kustomize -------------------------------------------------------------------------------


def _kustomizations() -> list[Path]:
    return [p for p in helpers.manifest_files() if helpers.is_kustomization(p)]


def test_kustomizations_list_every_manifest_and_only_existing_files() -> None:
    listed: set[Path] = set()
    for kfile in _kustomizations():
        data = helpers.documents(kfile)[0]
        assert data["kind"] in ("Kustomization", "Component")
        for entry in data.get("resources", []) + data.get("components", []):
            target = (kfile.parent / entry).resolve()
            assert target.exists(), f"{_rel(kfile)} lists {entry}: missing"
            if target.is_file():
                listed.add(target)
    objects = {p.resolve() for p in helpers.manifest_files() if not helpers.is_kustomization(p)}
    assert objects - listed == set(), f"not in any kustomization: {objects - listed}"
    base = helpers.documents(helpers.DEPLOY / "kustomization.yaml")[0]
    assert base["kind"] == "Kustomization"
    assert base["namespace"] == helpers.one("Namespace")["metadata"]["name"] == "joulie-system"
    # Only the optional ServiceMonitor (it needs the Prometheus Operator) lives outside it.
    outside = {p.name for p in objects} - {
        (helpers.DEPLOY / e).resolve().name for e in base["resources"]
    }
    assert outside == {"servicemonitor.yaml"}


def test_namespaced_objects_are_in_the_namespace() -> None:
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for _, doc in helpers.objects():
        if doc["kind"] not in cluster_scoped:
            assert doc["metadata"].get("namespace") == "joulie-system", doc["metadata"]["name"]


def test_the_image_tag_is_the_project_version() -> None:
    base = helpers.documents(helpers.DEPLOY / "kustomization.yaml")[0]
    images = {i["name"]: i for i in base["images"]}
    version = helpers.pyproject()["project"]["version"]
    assert images["joulie-tasks"]["newTag"] == version
    for component in helpers.OPERATOR_SERVICES:
        pod = helpers.deployment_for(component)["spec"]["template"]["spec"]
        assert pod["containers"][0]["image"] == "joulie-tasks", component


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_builds_the_base_and_the_monitoring_component(tmp_path: Path) -> None:
    base = helpers.kustomize(helpers.DEPLOY)
    kinds = sorted(d["kind"] for d in base)
    assert "ServiceMonitor" not in kinds
    assert len(base) == len(helpers.objects()) - 1
    for doc in base:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "joulie"
        helpers.validate(doc, K8S_VERSIONS[-1])
    worker = next(d for d in base if d["metadata"]["name"] == "joulie-tasks-worker")
    image = worker["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"joulie-tasks:{helpers.pyproject()['project']['version']}"
    # An overlay that enables the component (kustomize needs relative paths).
    rel = Path(*[".."] * len(tmp_path.parts[1:])) / helpers.DEPLOY.relative_to("/")
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {rel}\ncomponents:\n  - {rel / 'monitoring'}\n"
    )
    with_monitoring = helpers.kustomize(tmp_path)
    monitors = [d for d in with_monitoring if d["kind"] == "ServiceMonitor"]
    assert len(monitors) == 1
    assert monitors[0]["metadata"]["namespace"] == "joulie-system"
    helpers.validate(monitors[0], K8S_VERSIONS[-1])


# --- the CRD ---------------------------------------------------------------------------------


@pytest.mark.parametrize("file", ["nodepowerprofiles.yaml", "nodetwins.yaml", "nodehardwares.yaml"])
def test_deployed_crd_is_the_packaged_crd(file: str) -> None:
    deployed = helpers.documents(helpers.DEPLOY / "crd" / file)
    packaged = yaml.safe_load_all((helpers.ROOT / "joulie_tasks" / "manifests" / file).read_text())
    assert deployed == [d for d in packaged if d]


def test_nodetwin_crd_matches_the_references_identity() -> None:
    """Group, version, kind, plural, scope and the status subresource (NODETWIN.md §1.1)."""
    (crd,) = helpers.documents(helpers.DEPLOY / "crd" / "nodetwins.yaml")
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "nodetwins.joulie.io"
    assert (spec["group"], spec["scope"]) == ("joulie.io", "Cluster")
    assert spec["names"] == {
        "kind": "NodeTwin",
        "listKind": "NodeTwinList",
        "plural": "nodetwins",
        "singular": "nodetwin",
        "shortNames": ["nt"],
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    schema = version["schema"]["openAPIV3Schema"]["properties"]
    assert schema["spec"]["required"] == ["nodeName", "profile"]
    assert "x-kubernetes-preserve-unknown-fields" not in str(crd)


def test_nodehardware_crd_matches_the_references_identity() -> None:
    """Group, version, kind, plural, scope, the status subresource and the fields we read
    (NODETWIN.md §2.1, §2.2)."""
    (crd,) = helpers.documents(helpers.DEPLOY / "crd" / "nodehardwares.yaml")
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "nodehardwares.joulie.io"
    assert (spec["group"], spec["scope"]) == ("joulie.io", "Cluster")
    assert spec["names"] == {
        "kind": "NodeHardware",
        "listKind": "NodeHardwareList",
        "plural": "nodehardwares",
        "singular": "nodehardware",
        "shortNames": ["nhw"],
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    schema = version["schema"]["openAPIV3Schema"]
    assert schema["required"] == ["spec", "metadata", "apiVersion", "kind"]
    assert schema["properties"]["spec"]["required"] == ["nodeName"]
    status = schema["properties"]["status"]["properties"]
    cpu, gpu = status["cpu"]["properties"], status["gpu"]["properties"]
    for field in ("rawModel", "model", "sockets", "totalCores", "capRange"):
        assert field in cpu
    assert set(cpu["capRange"]["properties"]) >= {"minWattsPerSocket", "maxWattsPerSocket"}
    for field in ("present", "rawModel", "model", "count", "capRangePerGpu"):
        assert field in gpu
    assert "x-kubernetes-preserve-unknown-fields" not in str(crd)


# --- settings ----------------------------------------------------------------------------------


def test_configmap_holds_valid_settings_with_the_spec_defaults() -> None:
    data = helpers.one("ConfigMap")["data"]
    assert set(data) <= helpers.settings_env_names(), set(data) - helpers.settings_env_names()
    assert all(isinstance(v, str) for v in data.values())
    assert "KUBECONFIG" not in data, "in the cluster the worker uses its service account"
    settings = config.read_settings(data)  # raises ConfigError on any invalid value
    for var in helpers.SPEC_VARIABLES:
        assert var in data, var
        field = var.lower()
        assert getattr(settings, field) == config.Settings.model_fields[field].default, var


def test_configmap_and_env_example_agree_except_connections() -> None:
    data = helpers.one("ConfigMap")["data"]
    env = helpers.read_env_file(helpers.ENV_EXAMPLE)
    differ = {k for k in set(data) | set(env) if data.get(k) != env.get(k)}
    assert differ <= {"REDIS_URL", "KUBECONFIG"}, differ


def test_every_operator_pod_reads_the_configmap() -> None:
    name = helpers.one("ConfigMap")["metadata"]["name"]
    for component in helpers.OPERATOR_SERVICES:
        container = helpers.deployment_for(component)["spec"]["template"]["spec"]["containers"][0]
        assert container["envFrom"] == [{"configMapRef": {"name": name}}], component
        assert "env" not in container, component


# --- workloads -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("component", "replicas", "args"),
    [
        ("worker", 2, ["worker", "--concurrency=2"]),
        ("beat", 2, ["beat"]),
        ("watcher", 2, ["watch"]),
        ("metrics", 1, ["metrics"]),
    ],
)
def test_operator_deployments(
    monkeypatch: pytest.MonkeyPatch, component: str, replicas: int, args: list[str]
) -> None:
    deployment = helpers.deployment_for(component)
    assert deployment["spec"]["replicas"] == replicas
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == args
    assert "command" not in container, "keep the image's ENTRYPOINT (joulie-tasks)"
    handler, _ = helpers.run_cli(monkeypatch, args)
    assert handler == {"watcher": "watch"}.get(component, component)


def _pods() -> list[tuple[str, dict[str, Any]]]:
    return [
        (d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in helpers.find("Deployment")
    ]


def test_pods_run_as_non_root_with_least_privilege() -> None:
    for name, pod in _pods():
        ctx = pod["securityContext"]
        assert ctx["runAsNonRoot"] is True, name
        assert ctx["runAsUser"] > 0, name
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert "privileged" not in sc, name


def test_containers_have_requests_and_memory_limits() -> None:
    for name, pod in _pods():
        for container in pod["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert "memory" in resources["limits"], name


def test_probes_where_they_make_sense() -> None:
    metrics = helpers.deployment_for("metrics")["spec"]["template"]["spec"]["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        assert metrics[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    redis = helpers.deployment_for("redis")["spec"]["template"]["spec"]["containers"][0]
    assert redis["readinessProbe"]["exec"]["command"] == ["redis-cli", "ping"]
    worker = helpers.deployment_for("worker")["spec"]["template"]["spec"]["containers"][0]
    ping = " ".join(worker["livenessProbe"]["exec"]["command"])
    assert 'inspect ping -d "celery@$(hostname)"' in ping
    assert "$REDIS_URL" in ping
    assert worker["livenessProbe"]["timeoutSeconds"] >= 10
    # A worker finishes its running task (hard limit 300 s) before it is killed.
    from joulie_tasks.queue import celery_app

    grace = helpers.deployment_for("worker")["spec"]["template"]["spec"]
    assert grace["terminationGracePeriodSeconds"] > celery_app.STAGE_HARD_LIMIT_S


def test_deployment_selectors_match_their_pods() -> None:
    for deployment in helpers.find("Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), deployment["metadata"]["name"]


def _pods_selected(selector: dict[str, str]) -> list[dict[str, Any]]:
    return [
        d
        for d in helpers.find("Deployment")
        if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
    ]


def test_services_select_one_deployment_and_named_ports() -> None:
    for service in helpers.find("Service"):
        targets = _pods_selected(service["spec"]["selector"])
        assert len(targets) == 1, service["metadata"]["name"]
        ports = {
            p["name"]: p["containerPort"]
            for c in targets[0]["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, service["metadata"]["name"]
            assert ports[port["targetPort"]] == port["port"]


def test_metrics_are_served_where_prometheus_looks() -> None:
    service = helpers.one("Service", "joulie-tasks-metrics")
    assert [p["port"] for p in service["spec"]["ports"]] == [helpers.metrics_port()]
    monitor = helpers.one("ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == ["joulie-system"]
    names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in names
        assert endpoint["path"] == "/metrics"
    # Exactly one Service carries the labels the ServiceMonitor selects.
    selected = [
        s
        for s in helpers.find("Service")
        if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert selected == [service]


def test_redis_persists_with_aof_and_never_evicts() -> None:
    deployment = helpers.deployment_for("redis")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}, "one writer on an RWO volume"
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"].startswith("redis:7")
    args = container["args"]
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs["--appendonly"] == "yes"
    assert pairs["--maxmemory-policy"] == "noeviction"
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/data"]
    claim = pod["volumes"][0]["persistentVolumeClaim"]["claimName"]
    pvc = helpers.one("PersistentVolumeClaim", claim)
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]


def test_redis_url_points_at_the_redis_service() -> None:
    url = helpers.one("ConfigMap")["data"]["REDIS_URL"]
    service = helpers.one("Service", "redis")
    port = service["spec"]["ports"][0]["port"]
    assert url.startswith(f"redis://{service['metadata']['name']}:{port}/")
