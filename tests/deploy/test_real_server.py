"""deploy/ on a real kube-apiserver, and the operator under exactly its RBAC.

Covers: every object of deploy/ (and the monitoring component) is accepted with
``fieldValidation=Strict`` and the CRD becomes Established; the operator, as the
shipped ServiceAccount with a TokenRequest token, runs every command that talks to
the API (reconcile, worker, status, plan --server-dry-run, history) without a single
403 in the server's audit log; and removing any one permission of the ClusterRole
makes it fail with the server's 403 message naming that verb and resource — the
NodeTwin permissions too, with the operator in ``OUTPUT_API=nodetwin`` mode.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from joulie_testbed.controlplane import ControlPlane
from joulie_testbed.emulator import seed as seeding
from joulie_testbed.procs import RedisServer, Stack, wait_for
from joulie_testbed.ticks import TickClient
from tests.envtest import apply
from tests.integration.apiproxy import ApiProxy
from tests.integration.cluster import ClusterBed

pytestmark = [pytest.mark.envtest, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SM_CRD = REPO / "tests" / "envtest" / "fixtures" / "servicemonitor-crd.yaml"
SA_USER = "system:serviceaccount:joulie-system:joulie-tasks"
MANAGED = {"joulie.io/managed": "true"}


def _objects() -> list[dict[str, Any]]:
    return [yaml.safe_load(SM_CRD.read_text()), *apply.render(DEPLOY, components=("monitoring",))]


@pytest.fixture(scope="module")
def installed(real_server: ControlPlane) -> str:
    """deploy/ applied to the real server; yields a token of the operator's ServiceAccount."""
    with real_server.api_client() as api:
        apply.apply_all(api, _objects())
        request = {"spec": {"expirationSeconds": 3600}}
        answer = k8s.CoreV1Api(api).create_namespaced_service_account_token(
            "joulie-tasks", "joulie-system", request
        )
    return str(answer.status.token)


def test_all_of_deploy_is_accepted_by_the_real_server(
    real_server: ControlPlane, installed: str
) -> None:
    with real_server.api_client() as api:
        answers = apply.apply_all(api, _objects())  # again: replaced, still accepted
        crd = k8s.ApiextensionsV1Api(api).read_custom_resource_definition(
            "nodepowerprofiles.joulie.io"
        )
    kinds = sorted({a["kind"] for a in answers})
    assert {"ClusterRole", "Deployment", "ServiceMonitor", "CustomResourceDefinition"} <= set(kinds)
    assert len(answers) == len(_objects())
    assert any(c.type == "Established" and c.status == "True" for c in crd.status.conditions)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_the_renderer_agrees_with_kubectl_kustomize() -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, check=True
    ).stdout

    def canonical(objs: list[dict[str, Any]]) -> list[str]:
        return sorted(json.dumps(o, sort_keys=True) for o in objs)

    assert canonical([d for d in yaml.safe_load_all(out) if d]) == canonical(apply.render(DEPLOY))


class Operator:
    """The operator as the ServiceAccount, through a recording proxy to the real server."""

    def __init__(self, *, plane: ControlPlane, token: str, tmp: Path, redis: RedisServer) -> None:
        self.plane = plane
        self.proxy = ApiProxy(plane.server, ca_file=plane.ca_file).start()
        kubeconfig = plane.write_kubeconfig(
            tmp / "sa.kubeconfig", token=token, server=self.proxy.url
        )
        self.admin = ClusterBed(
            backend="real", api=plane.api_client(), proxy=self.proxy, kubeconfig=kubeconfig
        )
        self.stack = Stack(tmp=tmp, redis_server=redis, kubeconfig=kubeconfig)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.stack.run_cli(*args)

    def close(self) -> None:
        self.stack.stop()
        self.admin.wipe()
        self.admin.api.close()
        self.proxy.stop()


@pytest.fixture
def operator(
    real_server: ControlPlane, installed: str, tmp_path: Path, redis_server: RedisServer
) -> Iterator[Operator]:
    op = Operator(plane=real_server, token=installed, tmp=tmp_path, redis=redis_server)
    op.admin.wipe()
    yield op
    op.close()


def perf_pod(name: str, node: str) -> dict[str, Any]:
    return seeding.make_pod(
        name, namespace="default", shape="selector-performance", node=node, phase="Running"
    )


def _forbidden(plane: ControlPlane, since: int) -> list[str]:
    return [
        f"{e['verb']} {e['objectRef'].get('resource')}"
        for e in plane.audit_events(since=since)
        if e["user"]["username"] == SA_USER and e.get("responseStatus", {}).get("code") == 403
    ]


def test_every_command_works_as_the_service_account_with_exactly_the_shipped_rbac(
    operator: Operator, state: Any, tmp_path: Path
) -> None:
    plane, admin, op = operator.plane, operator.admin, operator
    mark = plane.audit_mark()
    # Given three managed nodes, the last running a performance pod
    for i in range(3):
        admin.create_node(f"rbac-{i}", labels=MANAGED)
    admin.create(perf_pod("perf", "rbac-2"))
    op.stack.configure(static_hp_frac="1")

    # When every API-facing command runs as the ServiceAccount
    first = op.cli("reconcile", "--once", "--output", "json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["written"] == 6
    for args in (("status",), ("history",), ("plan", "--server-dry-run")):
        result = op.cli(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)

    # and a worker's tick turns them eco (one deferred: a Node event is created), a
    # profile changed by someone else makes the tick re-read it (get), and a deleted
    # node's profile is removed (delete)
    op.stack.configure(static_hp_frac="0")
    worker = op.stack.start_worker("w1")
    ticks = TickClient(op.stack.redis.url, state)
    op.proxy.conflict_before("PUT", r"/nodepowerprofiles/", times=1, action=_touch_profile(admin))
    report = ticks.run()
    assert report["failures"] == {}
    wait_for(lambda: admin.list("events", "default"), what="a Node event")
    assert admin.delete("nodes", "rbac-0")
    assert ticks.run()["failures"] == {}
    ticks.app.close()

    # Then the operator converged, and the server never said 403 to it
    assert {p["spec"]["nodeName"] for p in admin.list("nodepowerprofiles")} == {"rbac-1", "rbac-2"}
    assert admin.labels("rbac-2")["joulie.io/draining"] == "true"
    assert "forbidden" not in worker.log().lower()
    verbs = {
        (e["verb"], e["objectRef"].get("resource"))
        for e in plane.audit_events(since=mark)
        if e["user"]["username"] == SA_USER
    }
    assert {
        ("get", "nodepowerprofiles"),
        ("delete", "nodepowerprofiles"),
        ("create", "events"),
    } <= verbs
    assert _forbidden(plane, mark) == []


def _touch_profile(admin: ClusterBed) -> Callable[[str], None]:
    def touch(path: str) -> None:
        name = path.split("?")[0].rsplit("/", 1)[-1]
        admin.call(
            "PATCH",
            f"/apis/joulie.io/v1alpha1/nodepowerprofiles/{name}",
            body={"metadata": {"annotations": {"test.joulie.io/touched": "yes"}}},
            content_type="application/merge-patch+json",
        )

    return touch


# --- removing one permission ------------------------------------------------------------

PERMISSIONS = [
    ("", "nodes", "get"),
    ("", "nodes", "list"),
    ("", "nodes", "patch"),
    ("", "pods", "list"),
    ("joulie.io", "nodepowerprofiles", "get"),
    ("joulie.io", "nodepowerprofiles", "list"),
    ("joulie.io", "nodepowerprofiles", "create"),
    ("joulie.io", "nodepowerprofiles", "update"),
    ("joulie.io", "nodepowerprofiles", "delete"),
    ("", "events", "create"),
    # joulie-tasks watch (the watch-fed cache)
    ("", "nodes", "watch"),
    ("", "pods", "watch"),
    ("joulie.io", "nodepowerprofiles", "watch"),
]
#: OUTPUT_API=nodetwin|both (docs/SPEC.md §13): each proven necessary below with the
#: operator in nodetwin mode.
TWIN_PERMISSIONS = [
    ("joulie.io", "nodetwins", "get"),
    ("joulie.io", "nodetwins", "list"),
    ("joulie.io", "nodetwins", "create"),
    ("joulie.io", "nodetwins", "update"),
    ("joulie.io", "nodetwins", "delete"),
    ("joulie.io", "nodetwins/status", "patch"),
    ("joulie.io", "nodetwins", "watch"),
]
#: NodeHardware is read when OUTPUT_API writes NodeTwins or NODE_ORDER=density (docs/SPEC.md
#: §13.10): proven necessary below like the twin rows, with the operator in nodetwin mode.
HARDWARE_PERMISSIONS = [
    ("joulie.io", "nodehardwares", "list"),
    ("joulie.io", "nodehardwares", "watch"),
]


def test_the_permission_table_is_exactly_the_shipped_cluster_role() -> None:
    role = next(o for o in apply.render(DEPLOY) if o["kind"] == "ClusterRole")
    granted = {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert granted == set(PERMISSIONS + TWIN_PERMISSIONS + HARDWARE_PERMISSIONS)


def _role_without(group: str, resource: str, verb: str) -> dict[str, Any]:
    role = next(o for o in apply.render(DEPLOY) if o["kind"] == "ClusterRole")
    for rule in role["rules"]:
        if group in rule["apiGroups"] and resource in rule["resources"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    role["rules"] = [r for r in role["rules"] if r["verbs"]]
    return role


def _allowed(api: k8s.ApiClient, group: str, resource: str, verb: str) -> bool:
    review = {
        "spec": {
            "user": SA_USER,
            "groups": ["system:serviceaccounts", "system:serviceaccounts:joulie-system"],
            "resourceAttributes": {
                "group": group,
                "resource": resource,
                "verb": verb,
                "namespace": "default" if resource in ("pods", "events") else "",
            },
        }
    }
    answer = k8s.AuthorizationV1Api(api).create_subject_access_review(review)
    return bool(answer.status.allowed)


def _set_role(
    admin: ClusterBed, role: dict[str, Any], *, check: tuple[str, str, str], allowed: bool
) -> None:
    apply.apply_all(admin.api, [role])
    # the authorizer's cache follows the change within moments: await it, don't sleep
    wait_for(lambda: _allowed(admin.api, *check) is allowed, what=f"RBAC {check} = {allowed}")


def _run_scenario(op: Operator, permission: tuple[str, str, str], state: Any) -> str:
    """Drive the operator so it needs ``permission``; return everything it said."""
    _, resource, verb = permission
    admin = op.admin
    if (resource, verb) == ("events", "create"):
        op.stack.configure(static_hp_frac="0")
        worker = op.stack.start_worker("w1")
        ticks = TickClient(op.stack.redis.url, state)
        ticks.run()
        wait_for(lambda: "forbidden" in worker.log(), what="the event's 403 in the log")
        ticks.app.close()
        return worker.log()
    if verb == "watch":
        # the watcher lists, then watches: the watch meets the authorizer; it logs the
        # 403 and retries (it never exits over it)
        watcher = op.stack.start_proc("watch", ["watch"], ready="started")
        wait_for(
            lambda: f'cannot watch resource "{resource}"' in watcher.log(),
            what=f"the {resource} watch's 403 in the log",
        )
        assert watcher.alive
        return watcher.log()
    if (resource, verb) == ("nodes", "get"):
        # a real server never answers our merge patch with 409; the proxy does, and the
        # operator's re-read (GET node) then meets the real authorizer
        op.proxy.answer_instead("PATCH", r"/api/v1/nodes/", status=409, times=1)
    if (resource, verb) == ("nodepowerprofiles", "get"):
        op.proxy.conflict_before(
            "PUT", r"/nodepowerprofiles/", times=1, action=_touch_profile(admin)
        )
    result = op.cli("reconcile", "--once", "--output", "json")
    if (resource, verb) == ("pods", "list"):
        # docs/SPEC.md: an unknown pod count holds every downgrade; the tick goes on
        held = [n["node"] for n in json.loads(result.stdout)["nodes"] if n["held"]]
        assert held == ["perm-1"], result.stdout
    else:
        assert result.returncode != 0, result.stdout
    return result.stdout + result.stderr


def _prepare(op: Operator, permission: tuple[str, str, str]) -> None:
    """A cluster where the operator must use ``permission`` on its next tick."""
    _, resource, verb = permission
    admin = op.admin
    for i in range(2):
        admin.create_node(f"perm-{i}", labels=MANAGED)
    admin.create(perf_pod("perf", "perm-1"))
    if (resource, verb) in {
        ("nodepowerprofiles", "update"),
        ("nodepowerprofiles", "delete"),
        ("nodepowerprofiles", "get"),
        ("events", "create"),
    }:
        # profiles exist (written with full rights) before the permission goes
        op.stack.configure(static_hp_frac="1")
        assert op.cli("reconcile", "--once").returncode == 0
        op.stack.configure(static_hp_frac="0")
    if (resource, verb) == ("nodepowerprofiles", "delete"):
        op.stack.configure(static_hp_frac="1")
        assert admin.delete("nodes", "perm-0")


@pytest.mark.parametrize("permission", PERMISSIONS, ids=lambda p: f"{p[2]}-{p[1]}")
def test_removing_one_permission_fails_with_a_403_naming_its_verb_and_resource(
    operator: Operator, permission: tuple[str, str, str], state: Any
) -> None:
    _, resource, verb = permission
    full = next(o for o in apply.render(DEPLOY) if o["kind"] == "ClusterRole")
    mark = operator.plane.audit_mark()
    _prepare(operator, permission)
    _set_role(operator.admin, _role_without(*permission), check=permission, allowed=False)
    try:
        said = _run_scenario(operator, permission, state)
    finally:
        _set_role(operator.admin, full, check=permission, allowed=True)

    assert "403" in said
    assert f'cannot {verb} resource "{resource}"' in said
    assert _forbidden(operator.plane, mark) == [f"{verb} {resource}"] * len(
        _forbidden(operator.plane, mark)
    )


# --- removing one NodeTwin permission (OUTPUT_API=nodetwin) --------------------------------


def _touch_twin(admin: ClusterBed) -> Callable[[str], None]:
    def touch(path: str) -> None:
        name = path.split("?")[0].rsplit("/", 1)[-1]
        admin.call(
            "PATCH",
            f"/apis/joulie.io/v1alpha1/nodetwins/{name}",
            body={"metadata": {"annotations": {"test.joulie.io/touched": "yes"}}},
            content_type="application/merge-patch+json",
        )

    return touch


def _prepare_twins(op: Operator, permission: tuple[str, str, str]) -> None:
    """Two managed nodes (perm-1 runs a performance pod), the operator in nodetwin mode
    and, where the permission acts on existing twins, twins written with full rights."""
    _, resource, verb = permission
    for i in range(2):
        op.admin.create_node(f"perm-{i}", labels=MANAGED)
    op.admin.create(perf_pod("perf", "perm-1"))
    op.stack.configure(output_api="nodetwin", static_hp_frac="1")
    if (resource, verb) in {("nodetwins", "get"), ("nodetwins", "update"), ("nodetwins", "delete")}:
        assert op.cli("reconcile", "--once").returncode == 0
        assert {t["spec"]["nodeName"] for t in op.admin.list("nodetwins")} == {"perm-0", "perm-1"}
    if (resource, verb) in {("nodetwins", "get"), ("nodetwins", "update")}:
        op.stack.configure(static_hp_frac="0")  # the next tick replaces both specs
    if (resource, verb) == ("nodetwins", "get"):
        # someone else changes the twin before our replace: the 409 makes the operator
        # re-read it (GET), which meets the real authorizer
        op.proxy.conflict_before("PUT", r"/nodetwins/", times=1, action=_touch_twin(op.admin))
    if (resource, verb) == ("nodetwins", "delete"):
        assert op.admin.delete("nodes", "perm-0")  # its twin is now an orphan


def _run_twin_scenario(op: Operator, permission: tuple[str, str, str]) -> str:
    """Drive the nodetwin-mode operator so it needs ``permission``; what it said."""
    _, resource, verb = permission
    if verb == "watch":
        watcher = op.stack.start_proc("watch", ["watch"], ready="started")
        wait_for(
            lambda: f'cannot watch resource "{resource}"' in watcher.log(),
            what=f"the {resource} watch's 403 in the log",
        )
        assert watcher.alive
        return watcher.log()
    result = op.cli("reconcile", "--once", "--output", "json")
    assert result.returncode != 0, result.stdout
    return result.stdout + result.stderr


def _forbidden_requests(plane: ControlPlane, since: int) -> list[str]:
    """``verb resource[/subresource]`` of every 403 the server gave the operator."""
    return [
        f"{e['verb']} {e['objectRef'].get('resource')}"
        + (f"/{e['objectRef']['subresource']}" if e["objectRef"].get("subresource") else "")
        for e in plane.audit_events(since=since)
        if e["user"]["username"] == SA_USER and e.get("responseStatus", {}).get("code") == 403
    ]


@pytest.mark.parametrize(
    "permission", TWIN_PERMISSIONS + HARDWARE_PERMISSIONS, ids=lambda p: f"{p[2]}-{p[1]}"
)
def test_removing_one_nodetwin_permission_fails_with_a_403_naming_its_verb_and_resource(
    operator: Operator, permission: tuple[str, str, str]
) -> None:
    _, resource, verb = permission
    full = next(o for o in apply.render(DEPLOY) if o["kind"] == "ClusterRole")
    mark = operator.plane.audit_mark()
    _prepare_twins(operator, permission)
    _set_role(operator.admin, _role_without(*permission), check=permission, allowed=False)
    try:
        said = _run_twin_scenario(operator, permission)
    finally:
        _set_role(operator.admin, full, check=permission, allowed=True)

    assert "403" in said
    assert f'cannot {verb} resource "{resource}"' in said
    forbidden = _forbidden_requests(operator.plane, mark)
    assert forbidden, "the server refused nothing"
    assert set(forbidden) == {f"{verb} {resource}"}
