"""The chart installed by the real Helm engine into the real kube-apiserver (envtest):
every object accepted, the operator's ServiceAccount can do exactly what a tick needs
(a real ``joulie-tasks reconcile --once`` runs as that ServiceAccount, with the
installed ConfigMap, and converges hand-made nodes), then ``helm uninstall`` removes
every object.

The control plane has no kube-controller-manager: nothing runs the pods, and the
PersistentVolumeClaim's ``kubernetes.io/pvc-protection`` finalizer (removed by that
controller in a real cluster) is removed by the test, as the controller would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import dynamic
from kubernetes.client.rest import ApiException

from joulie_testbed.controlplane import ControlPlane
from joulie_testbed.procs import RedisServer, wait_for
from tests import REPO
from tests.deploy import chart, rbac_scan

pytestmark = [pytest.mark.envtest, pytest.mark.slow]

RELEASE = "jt-envtest"  # full name: jt-envtest-joulie-tasks (no clash with deploy/ names)
NAMESPACE = "joulie-chart-envtest"
CRD = "nodepowerprofiles.joulie.io"
PROFILE_LABEL = "joulie.io/power-profile"


@pytest.fixture
def admin(control_plane: ControlPlane) -> Iterator[k8s.ApiClient]:
    api = control_plane.api_client()
    yield api
    api.close()


def _exists(resource: Any, name: str, namespace: str | None) -> dict[str, Any] | None:
    try:
        obj = resource.get(name=name, namespace=namespace)
    except dynamic.exceptions.NotFoundError:
        return None
    return dict(obj.to_dict())


def _manifest(release: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(release["manifest"]) if d]


def _can(api: k8s.ApiClient, group: str, resource: str, verb: str) -> bool:
    plural, _, sub = resource.partition("/")  # nodetwins/status: a subresource
    review = k8s.V1SelfSubjectAccessReview(
        spec=k8s.V1SelfSubjectAccessReviewSpec(
            resource_attributes=k8s.V1ResourceAttributes(
                group=group,
                resource=plural,
                subresource=sub or None,
                verb=verb,
                namespace="default",
            )
        )
    )
    answer = k8s.AuthorizationV1Api(api).create_self_subject_access_review(review)
    return bool(answer.status.allowed)


def _node(name: str, selector: tuple[str, str]) -> k8s.V1Node:
    return k8s.V1Node(metadata=k8s.V1ObjectMeta(name=name, labels={selector[0]: selector[1]}))


@pytest.fixture
def helm_config(control_plane: ControlPlane, admin: k8s.ApiClient) -> Iterator[helm.Config]:
    """A Helm configuration for the real server; forgets the release and the CRD after."""
    extensions = k8s.ApiextensionsV1Api(admin)
    names = {c.metadata.name for c in extensions.list_custom_resource_definition().items}
    cfg = helm.Config(kubeconfig_path=control_plane.kubeconfig, namespace=NAMESPACE)
    yield cfg
    cfg.uninstall(RELEASE, ignore_not_found=True)
    if CRD not in names:  # Helm never deletes CRDs; leave the server as we found it
        extensions.delete_custom_resource_definition(CRD)
        wait_for(
            lambda: (
                CRD
                not in {c.metadata.name for c in extensions.list_custom_resource_definition().items}
            ),
            timeout=30,
            what="the CRD to be deleted",
        )
    cfg.close()


@pytest.mark.timeout(240)
def test_install_run_a_tick_as_the_service_account_and_uninstall(
    control_plane: ControlPlane,
    admin: k8s.ApiClient,
    helm_config: helm.Config,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    selector = ("joulie-envtest/chart", uuid.uuid4().hex[:12])
    values = {"config": {"nodeSelector": f"{selector[0]}={selector[1]}"}}
    # A bad value fails the install before anything reaches the server.
    with pytest.raises(helm.HelmError, match="at '/config/staticHpFrac': maximum"):
        helm_config.install(
            chart.CHART, RELEASE, {"config": {"staticHpFrac": 2}}, namespace=NAMESPACE
        )
    assert helm_config.list(all_states=True) == []
    release = helm_config.install(
        chart.CHART, RELEASE, values, namespace=NAMESPACE, create_namespace=True, timeout=120
    )
    assert release["status"] == "deployed"
    assert "joulie-tasks status" in release["notes"]

    # Every object of the release exists on the server, as rendered.
    resources = dynamic.DynamicClient(admin).resources
    objects = _manifest(release)
    assert {o["kind"] for o in objects} >= {"Deployment", "ClusterRole", "ServiceAccount"}
    for obj in objects:
        resource = resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        stored = _exists(resource, obj["metadata"]["name"], obj["metadata"].get("namespace"))
        assert stored is not None, f"{obj['kind']}/{obj['metadata']['name']} not on the server"
        assert stored["metadata"]["labels"] == obj["metadata"]["labels"]
    crd = k8s.ApiextensionsV1Api(admin).read_custom_resource_definition(CRD)
    assert any(c.type == "Established" and c.status == "True" for c in crd.status.conditions)

    # The worker's ServiceAccount, with a token from the TokenRequest API.
    fullname = f"{RELEASE}-joulie-tasks"
    token = (
        k8s.CoreV1Api(admin)
        .create_namespaced_service_account_token(
            fullname,
            NAMESPACE,
            k8s.AuthenticationV1TokenRequest(
                spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
            ),
        )
        .status.token
    )
    operator = control_plane.api_client(token)
    try:
        used = rbac_scan.used_permissions()
        matrix = {
            (group, resource, verb)
            for group, resource in [
                ("", "nodes"),
                ("", "pods"),
                ("joulie.io", "nodepowerprofiles"),
                ("joulie.io", "nodetwins"),
                ("joulie.io", "nodetwins/status"),
                ("joulie.io", "nodehardwares"),
                ("", "events"),
                ("", "secrets"),
                ("", "configmaps"),
                ("apps", "deployments"),
            ]
            for verb in ("get", "list", "watch", "create", "update", "patch", "delete")
        }
        allowed = {p for p in matrix | used if _can(operator, *p)}
        assert allowed == used, f"extra: {allowed - used}; missing: {used - allowed}"
    finally:
        operator.close()

    # A real tick as that ServiceAccount, with the installed ConfigMap.
    core = k8s.CoreV1Api(admin)
    nodes = [f"chart-envtest-{selector[1]}-{i}" for i in range(3)]
    for name in nodes:
        core.create_node(_node(name, selector))
    try:
        data = core.read_namespaced_config_map(fullname, NAMESPACE).data
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("JOULIE", "CELERY"))},
            **data,
            "REDIS_URL": redis_server.url,
            "KUBECONFIG": str(control_plane.write_kubeconfig(tmp_path / "sa", token=token)),
        }
        mark = control_plane.audit_mark()
        done = subprocess.run(
            [sys.executable, "-m", "joulie_tasks", "reconcile", "--once", "--output", "json"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        labels = {n: core.read_node(n).metadata.labels.get(PROFILE_LABEL) for n in nodes}
        assert sorted(labels.values()) == ["eco", "performance", "performance"], labels
        profiles = k8s.CustomObjectsApi(admin).list_cluster_custom_object(
            "joulie.io", "v1alpha1", "nodepowerprofiles"
        )["items"]
        decided = {p["spec"]["nodeName"]: p["spec"]["profile"] for p in profiles}
        assert {n: decided.get(n) for n in nodes} == labels
        user = f"system:serviceaccount:{NAMESPACE}:{fullname}"
        by_sa = [e for e in control_plane.audit_events(since=mark) if e["user"]["username"] == user]
        assert by_sa, "the tick did not run as the ServiceAccount"
        denied = [e["requestURI"] for e in by_sa if e["responseStatus"]["code"] == 403]
        assert denied == []
    finally:
        for name in nodes:
            core.delete_node(name)
        custom = k8s.CustomObjectsApi(admin)
        for p in custom.list_cluster_custom_object("joulie.io", "v1alpha1", "nodepowerprofiles")[
            "items"
        ]:
            if p["spec"]["nodeName"] in nodes:
                custom.delete_cluster_custom_object(
                    "joulie.io", "v1alpha1", "nodepowerprofiles", p["metadata"]["name"]
                )

    # helm uninstall removes every object of the release.
    helm_config.uninstall(RELEASE)
    for pvc in (o for o in objects if o["kind"] == "PersistentVolumeClaim"):
        try:
            core.patch_namespaced_persistent_volume_claim(
                pvc["metadata"]["name"], NAMESPACE, {"metadata": {"finalizers": None}}
            )
        except ApiException as e:
            if e.status != 404:  # already gone is fine
                raise
    for obj in objects:
        resource = resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        name, namespace = obj["metadata"]["name"], obj["metadata"].get("namespace")
        wait_for(
            lambda resource=resource, name=name, namespace=namespace: (
                _exists(resource, name, namespace) is None
            ),
            timeout=30,
            what=f"{obj['kind']}/{name} to be deleted",
        )
    assert helm_config.list(all_states=True) == []
