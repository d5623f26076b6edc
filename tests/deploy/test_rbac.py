"""RBAC least privilege: the ClusterRole grants exactly what the code calls, no more, no less.

The set of (apiGroup, resource, verb) is derived from the source by ``rbac_scan``
(``ast``, see its docstring), never written down twice.
"""

from __future__ import annotations

import textwrap

import pytest

from joulie_tasks.ports import cluster
from tests.deploy import helpers, rbac_scan


def granted_permissions() -> set[rbac_scan.Permission]:
    role = helpers.one("ClusterRole")
    granted: set[rbac_scan.Permission] = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, (
            f"rule {rule}: no resourceNames/nonResourceURLs expected"
        )
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], f"wildcard in {key} of {rule}"
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                for verb in rule["verbs"]:
                    permission = (group, res, verb)
                    assert permission not in granted, f"{permission} granted twice"
                    granted.add(permission)
    return granted


def test_cluster_role_grants_exactly_what_the_code_uses() -> None:
    scan = rbac_scan.operator_scan()
    used = {rbac_scan.permission(c, v) for c, v in scan.uses}
    granted = granted_permissions()
    capabilities = {
        rbac_scan.permission(r.resource, r.verb)
        for reqs in scan.capabilities.values()
        for r in reqs
        if r.resource is not None
    }
    unused = sorted(capabilities - used)
    assert granted == used, (
        f"ClusterRole is not least privilege.\n"
        f"  missing (the code calls them): {sorted(used - granted)}\n"
        f"  extra (nothing calls them):     {sorted(granted - used)}\n"
        f"  gateway methods nobody calls:   {unused}\n"
        f"  call sites: {scan.sites}"
    )


def test_the_scan_sees_the_reconcile_reads_and_writes() -> None:
    """Guards the scan itself: a tick must at least read nodes, pods and profiles."""
    used = rbac_scan.used_permissions()
    for expected in [
        ("", "nodes", "list"),
        ("", "pods", "list"),
        ("joulie.io", "nodepowerprofiles", "list"),
        ("", "nodes", "patch"),
    ]:
        assert expected in used, f"scan lost {expected}; used={sorted(used)}"


def test_request_verbs_match_http_methods() -> None:
    """The verb label of every _request is the RBAC verb its HTTP method implies."""
    kube_source, _ = rbac_scan.sources(rbac_scan.PACKAGE)
    requests = rbac_scan.gateway_requests(kube_source, rbac_scan.operator_constants())
    assert requests, "no _request call found in kube.py"
    for reqs in requests.values():
        for r in reqs:
            assert rbac_scan.http_verb(r) == r.verb, (
                f"kube.py:{r.line} {r.method}: verb {r.verb!r} but {r.http_method} implies "
                f"{rbac_scan.http_verb(r)!r}"
            )


def test_pods_are_listed_cluster_wide_so_the_role_is_cluster_scoped() -> None:
    assert not cluster.PODS.path().startswith("/api/v1/namespaces")
    binding = helpers.one("ClusterRoleBinding")
    role = helpers.one("ClusterRole")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }


def test_binding_names_the_worker_service_account_only() -> None:
    binding = helpers.one("ClusterRoleBinding")
    sa = helpers.one("ServiceAccount")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": sa["metadata"]["name"],
            "namespace": sa["metadata"]["namespace"],
        }
    ]
    worker = helpers.deployment_for("worker")["spec"]["template"]["spec"]
    assert worker["serviceAccountName"] == sa["metadata"]["name"]
    assert worker.get("automountServiceAccountToken") is True
    # Only the worker runs reconcile stages; the other pods get no API token at all.
    for component in ("beat", "metrics", "redis"):
        spec = helpers.deployment_for(component)["spec"]["template"]["spec"]
        assert spec.get("serviceAccountName") in (None, "default"), component
        assert spec.get("automountServiceAccountToken") is False, component


# --- the scanner on small made-up sources ------------------------------------------------

_FAKE_KUBE = textwrap.dedent(
    """
    NODES = Resource("/api/v1", "nodes")
    THINGS = Resource("/apis/x.io/v1", "things")

    class ApiGateway:
        def list_items(self, resource, *, page_size):
            return self._request("list", resource, "GET", resource.path())

        def get(self, resource, name):
            return self._request("get", resource, "GET", resource.path(name))

        def delete_thing(self, name):
            self._request("delete", THINGS, "DELETE", THINGS.path(name))

        def _request(self, verb, resource, method, path):
            ...
    """
)


def _fake_scan(**modules: str) -> set[tuple[str, str]]:
    sources = {f"{k}.py": textwrap.dedent(v) for k, v in modules.items()}
    return rbac_scan.scan(_FAKE_KUBE, sources, {"NODES", "THINGS"}).uses


def test_scanner_follows_resources_through_helpers_and_ignores_dict_get() -> None:
    uses = _fake_scan(
        a="""
        from joulie_tasks.adapters import kube
        from joulie_tasks.ports import cluster

        def _list(gateway, resource: cluster.Resource, size):
            return list(gateway.list_items(resource, page_size=size))

        def snapshot(gateway, labels):
            _list(gateway, kube.THINGS, 10)
            value = labels.get("x", None)
            return lambda: gateway.get(cluster.NODES, value)
        """
    )
    assert uses == {("THINGS", "list"), ("NODES", "get")}


def test_scanner_counts_fixed_methods_only_when_called() -> None:
    assert _fake_scan(a="def f(g):\n    return 1\n") == set()
    assert _fake_scan(a="def f(g):\n    g.delete_thing('n')\n") == {("THINGS", "delete")}


def test_scanner_refuses_what_it_cannot_resolve() -> None:
    with pytest.raises(rbac_scan.ScanError, match="list_items"):
        _fake_scan(a="def f(g, r):\n    g.list_items(r, page_size=1)\n")
