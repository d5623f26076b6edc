"""One cluster interface for tests, on the API emulator or on a real kube-apiserver.

A test body written against ``ClusterBed`` runs unchanged on both backends: objects
are created, changed and read through the official client over HTTP, the way a
user's cluster gets them (a pod is created, then its phase is set through the
``/status`` subresource — there is no kubelet). The operator is pointed at an
``ApiProxy`` in front of the backend, which logs its requests (``counters``) and can
make a real concurrent write before one of them (``conflict_on_profile_updates``).

Isolation: ``wipe()`` deletes every node, pod, NodePowerProfile and event the tests
can make, so each test starts from an empty cluster without restarting the server.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from joulie_testbed.emulator import seed as seeding
from tests.integration.apiproxy import ApiProxy

NPP_PATH = "/apis/joulie.io/v1alpha1/nodepowerprofiles"
MERGE_PATCH = "application/merge-patch+json"
WRITE_VERBS = ("patch", "create", "update", "delete")


def _path(resource: str, name: str | None = None, namespace: str | None = None) -> str:
    base = {
        "nodes": "/api/v1/nodes",
        "nodepowerprofiles": NPP_PATH,
        "nodetwins": "/apis/joulie.io/v1alpha1/nodetwins",
        "nodehardwares": "/apis/joulie.io/v1alpha1/nodehardwares",
        "pods": "/api/v1/pods",
        "events": "/api/v1/events",
    }[resource]
    if namespace is not None:
        base = base.replace(f"/{resource}", f"/namespaces/{namespace}/{resource}")
    return base if name is None else f"{base}/{name}"


class ClusterBed:
    """A cluster driven through the official client; ``backend`` is emulator or real."""

    def __init__(
        self, *, backend: str, api: k8s.ApiClient, proxy: ApiProxy, kubeconfig: Path
    ) -> None:
        self.backend = backend
        self.api = api
        self.proxy = proxy
        #: the operator's kubeconfig: through the recording proxy
        self.kubeconfig = kubeconfig
        self._namespaces: set[str] = {"default"}

    # -- raw calls ----------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, Any]] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One request as the admin; the JSON answer, or ``k8s.ApiException``."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        method, url, headers, body_out, _ = self.api.param_serialize(
            method,
            path,
            query_params=query or None,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(method, url, header_params=headers, body=body_out)
        raw = response.read()
        if not 200 <= response.status < 300:
            raise k8s.ApiException(status=response.status, reason=raw.decode(errors="replace"))
        return json.loads(raw) if raw else {}

    # -- objects --------------------------------------------------------------------

    def create_node(
        self, name: str, *, labels: Mapping[str, str], unschedulable: bool = False
    ) -> dict[str, Any]:
        return self.create(seeding.make_node(name, labels=labels, unschedulable=unschedulable))

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create a node, pod or NodePowerProfile; a pod's ``status.phase`` goes
        through ``/status`` afterwards, as a kubelet would report it."""
        kind = obj["kind"]
        if kind == "Node":
            return self.call("POST", _path("nodes"), body=dict(obj))
        if kind == "NodePowerProfile":
            return self.call("POST", _path("nodepowerprofiles"), body=dict(obj))
        assert kind == "Pod", kind
        body = {k: v for k, v in obj.items() if k != "status"}
        ns = obj["metadata"].get("namespace", "default")
        self.ensure_namespace(ns)
        created = self.call("POST", _path("pods", namespace=ns), body=body)
        phase = (obj.get("status") or {}).get("phase")
        if phase and phase != "Pending":
            return self.set_pod_phase(obj["metadata"]["name"], phase, namespace=ns)
        return created

    def ensure_namespace(self, name: str) -> None:
        """Create the namespace once (namespaces are never deleted: no controller would
        finish the deletion on a bare kube-apiserver)."""
        # (the emulator has no Namespace resource and takes pods in any namespace)
        if name in self._namespaces or self.backend == "emulator":
            return
        try:
            self.call("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
        except k8s.ApiException as e:
            if e.status != 409:
                raise
        self._namespaces.add(name)

    def create_all(self, objs: Iterable[Mapping[str, Any]], *, threads: int = 8) -> None:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(self.create, objs))

    def seed(self, nodes: int, pods_per_node: float, *, seed: int, **options: Any) -> None:
        """A generated cluster (``emulator.seed.generate_cluster``), created through the API."""
        cluster = seeding.generate_cluster(nodes, pods_per_node, seed=seed, **options)
        self.create_all(cluster.nodes)
        self.create_all(cluster.pods)

    def set_pod_phase(self, name: str, phase: str, *, namespace: str = "default") -> dict[str, Any]:
        return self.call(
            "PATCH",
            _path("pods", name, namespace) + "/status",
            body={"status": {"phase": phase}},
            content_type=MERGE_PATCH,
        )

    def label_node(self, name: str, labels: Mapping[str, str | None]) -> dict[str, Any]:
        return self.call(
            "PATCH",
            _path("nodes", name),
            body={"metadata": {"labels": dict(labels)}},
            content_type=MERGE_PATCH,
        )

    def delete(self, resource: str, name: str, namespace: str | None = None) -> bool:
        """Delete now (grace period 0: no kubelet would ever confirm); False if missing."""
        try:
            self.call(
                "DELETE",
                _path(resource, name, namespace),
                body={"gracePeriodSeconds": 0},
            )
        except k8s.ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return self.call("GET", _path(resource, name, namespace))
        except k8s.ApiException as e:
            if e.status == 404:
                return None
            raise

    def get_node(self, name: str) -> dict[str, Any]:
        node = self.get("nodes", name)
        if node is None:
            raise KeyError(name)
        return node

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.call("GET", _path(resource, namespace=namespace))[
            "items"
        ]
        return items

    # emulator-compatible names, so one test body serves both backends
    def list_objects(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.list(resource, namespace)

    def get_object(
        self, resource: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        return self.get(resource, name, namespace)

    def delete_object(self, resource: str, name: str, namespace: str | None = None) -> bool:
        return self.delete(resource, name, namespace)

    def put_object(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create, or for an existing pod set its phase (through ``/status``)."""
        meta = obj["metadata"]
        if obj["kind"] == "Pod":
            ns = meta.get("namespace", "default")
            if self.get("pods", meta["name"], ns) is not None:
                return self.set_pod_phase(meta["name"], obj["status"]["phase"], namespace=ns)
        return self.create(obj)

    def labels(self, node: str) -> dict[str, str]:
        labels: dict[str, str] = self.get_node(node)["metadata"].get("labels") or {}
        return labels

    def wipe(self) -> None:
        """Delete every node, pod, NodePowerProfile, NodeTwin, NodeHardware and event: an
        empty cluster."""
        for pod in self.list("pods"):
            self.delete("pods", pod["metadata"]["name"], pod["metadata"]["namespace"])
        for resource in ("nodes", "nodepowerprofiles", "nodetwins", "nodehardwares"):
            for obj in self.list(resource):
                self.delete(resource, obj["metadata"]["name"])
        for event in self.list("events"):
            self.delete("events", event["metadata"]["name"], event["metadata"]["namespace"])

    # -- the operator's traffic ----------------------------------------------------

    def counters(self) -> Counter[tuple[str, str]]:
        """The operator's requests by (verb, resource), as the proxy saw them."""
        return self.proxy.counters()

    def reset_counters(self) -> None:
        self.proxy.reset()

    def writes_made(self) -> int:
        return sum(n for (verb, _), n in self.counters().items() if verb in WRITE_VERBS)

    def conflict_on_profile_updates(self, *, times: int) -> None:
        """Before each of the operator's next ``times`` NodePowerProfile PUTs, change
        that profile (an annotation): the server answers the PUT with a real 409."""

        def touch(path: str) -> None:
            name = path.split("?")[0].rsplit("/", 1)[-1]
            self.call(
                "PATCH",
                _path("nodepowerprofiles", name),
                body={"metadata": {"annotations": {"test.joulie.io/touched": "yes"}}},
                content_type=MERGE_PATCH,
            )

        self.proxy.conflict_before("PUT", r"/nodepowerprofiles/", times=times, action=touch)
