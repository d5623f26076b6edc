"""The emulator held to the real kube-apiserver: same requests, same answers.

Every scenario below is a short script of raw REST requests sent through the
official client (``ApiClient.call_api``, as joulie_tasks/kube.py sends them). One
test body runs a scenario against the in-package emulator and against the real
server (the session's ``control_plane``) and compares what each answered, step by
step: HTTP status, the shape of a Status body (kind, apiVersion, status, reason,
code, the keys of ``details`` and its name/group/kind, the reason and field of each
cause; never the message text), chosen fields of returned objects, and list
semantics (names in order, whether a continue token / remainingItemCount came).

Objects are isolated by unique names (one suffix per test, the same on both
backends) and deleted at the end; the real server is shared by the whole session
and has no kube-controller-manager, so the module's namespace is never deleted.
The CRD installed on both is deploy/crd/nodepowerprofiles.yaml, POSTed through the
API. Every difference this suite found was fixed in the emulator (the list is in
the closing note of issue 9); the simplifications left are in emulator/api.py.
"""

from __future__ import annotations

import base64
import json
import secrets
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from joulie_testbed.controlplane import ControlPlane
from joulie_testbed.emulator import Emulator
from joulie_testbed.procs import wait_for

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"
NPP = "/apis/joulie.io/v1alpha1/nodepowerprofiles"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
CRD_FILE = Path(__file__).resolve().parents[2] / "deploy" / "crd" / "nodepowerprofiles.yaml"


# --- backends ---------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str]


@dataclass
class Backend:
    """One API server reached through the official client, plus how to compact it."""

    name: str
    api: k8s.ApiClient
    compact: Callable[[], None]
    cleanups: list[tuple[str, Sequence[tuple[str, str]]]] = field(default_factory=list)

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
    ) -> Reply:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        method, url, headers, body_out, _ = self.api.param_serialize(
            method,
            path,
            query_params=list(query) or None,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = self.api.call_api(method, url, header_params=headers, body=body_out)
        raw = resp.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Reply(resp.status, parsed, dict(resp.headers))

    def made(self, path: str, query: Sequence[tuple[str, str]] = ()) -> None:
        """Delete ``path`` (with ``query``) when the test ends, newest first."""
        self.cleanups.append((path, query))

    def clean(self) -> None:
        while self.cleanups:
            path, query = self.cleanups.pop()
            self.call("DELETE", path, query=query)


def _etcd_compact(plane: ControlPlane, api: k8s.ApiClient) -> Callable[[], None]:
    """Compact etcd the way kube-apiserver's own compactor does (every 5 min, by default).

    The compactor records the compacted revision under ``compact_rev_key``; the
    server watches that key and drops its watch-cache snapshots older than it, and
    from then on a continue token minted before answers 410 Expired. Returns once a
    probe token minted here has expired (the server notices within about 10 s).
    """

    def post(path: str, doc: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{plane.etcd_port}{path}",
            data=json.dumps(doc).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            result: dict[str, Any] = json.loads(resp.read())
        return result

    def put(key: bytes, value: bytes) -> int:
        doc = {"key": base64.b64encode(key).decode(), "value": base64.b64encode(value).decode()}
        return int(post("/v3/kv/put", doc)["header"]["revision"])

    def probe(token: str | None) -> tuple[int, str | None]:
        query = [("limit", "1")] + ([("continue", token)] if token else [])
        reply = Backend("probe", api, lambda: None).call("GET", "/api/v1/namespaces", query=query)
        return reply.status, (reply.body.get("metadata") or {}).get("continue")

    def compact() -> None:
        _, token = probe(None)
        assert token, "the probe list must span two pages"
        revision = put(b"compact_rev_key", b"0")
        put(b"compact_rev_key", str(revision).encode())
        post("/v3/kv/compaction", {"revision": revision, "physical": True})
        wait_for(
            lambda: probe(token)[0] == 410,
            timeout=60,
            interval=0.25,
            what="the server to see the compaction",
        )

    return compact


def _install_crd(backend: Backend) -> None:
    """POST the shipped CRD (deploy/crd/) and wait until the server establishes it."""
    crd = yaml.safe_load(CRD_FILE.read_text())
    reply = backend.call("POST", CRD_PATH, body=crd)
    assert reply.status in (201, 409), reply.body

    def established() -> bool:
        got = backend.call("GET", f"{CRD_PATH}/{crd['metadata']['name']}").body
        conditions = (got.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_for(established, what="the NodePowerProfile CRD to be established")


@pytest.fixture(scope="module")
def namespace(control_plane: ControlPlane) -> str:
    """One namespace per module on the real server (never deleted: no controller-manager)."""
    name = f"conf-{secrets.token_hex(3)}"
    with control_plane.api_client() as api:
        k8s.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture(scope="module")
def emulator_backend() -> Iterator[Backend]:
    emu = Emulator(install_crd=False).start()
    conf = k8s.Configuration()
    conf.host = emu.url
    with k8s.ApiClient(conf) as api:
        backend = Backend("emulator", api, emu.compact)
        _install_crd(backend)
        yield backend
    emu.stop()


@pytest.fixture(scope="module")
def real_backend(control_plane: ControlPlane, namespace: str) -> Iterator[Backend]:
    with control_plane.api_client() as api:
        backend = Backend("real", api, _etcd_compact(control_plane, api))
        _install_crd(backend)
        yield backend


# --- what is compared -------------------------------------------------------------------


def _get(doc: Any, path: str) -> Any:
    node = doc
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def status_shape(body: Mapping[str, Any]) -> dict[str, Any]:
    details = body.get("details") or {}
    shape: dict[str, Any] = {
        k: body.get(k) for k in ("kind", "apiVersion", "status", "reason", "code")
    }
    shape["keys"] = sorted(body)
    shape["details"] = {k: details.get(k) for k in ("name", "group", "kind") if k in details}
    shape["details_keys"] = sorted(k for k in details if k != "uid")
    causes = details.get("causes") or []
    shape["causes"] = sorted({(c.get("reason"), c.get("field")) for c in causes})
    return shape


def shape(reply: Reply, pick: Sequence[str] = ()) -> dict[str, Any]:
    """What must agree between the two servers for one reply."""
    out: dict[str, Any] = {"code": reply.status}
    body = reply.body
    if not isinstance(body, dict):
        out["body"] = type(body).__name__
        return out
    if body.get("kind") == "Status":
        out["status"] = status_shape(body)
        return out
    out["kind"] = body.get("kind")
    out["apiVersion"] = body.get("apiVersion")
    if isinstance(body.get("items"), list):
        meta = body.get("metadata") or {}
        out["names"] = [_get(i, "metadata.name") for i in body["items"]]
        out["continue"] = bool(meta.get("continue"))
        out["remainingItemCount"] = meta.get("remainingItemCount")
        out["item_kinds"] = sorted({(i.get("kind"), i.get("apiVersion")) for i in body["items"]})
    for path in pick:
        out[path] = _drop_nulls(_get(body, path))
    return out


def _drop_nulls(value: Any) -> Any:
    """Null members read as absent (Go sends zero times as null, e.g. in conditions)."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


class Script:
    """Runs one scenario against one backend, recording the shape of each step."""

    def __init__(self, backend: Backend, ns: str, uid: str) -> None:
        self.b = backend
        self.ns = ns
        self.uid = uid
        self.steps: list[tuple[str, dict[str, Any]]] = []

    def name(self, base: str) -> str:
        return f"{base}-{self.uid}"

    def step(
        self,
        label: str,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
        pick: Sequence[str] = (),
    ) -> Reply:
        reply = self.b.call(method, path, query=query, body=body, content_type=content_type)
        self.steps.append((label, shape(reply, pick)))
        return reply

    def note(self, label: str, value: Any) -> None:
        self.steps.append((label, {"value": value}))

    # --- object builders and creators ---

    def node(self, base: str, labels: Mapping[str, str] | None = None) -> tuple[str, str]:
        name = self.name(base)
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"conf-run": self.uid, **(labels or {})}},
        }
        path = f"/api/v1/nodes/{name}"
        reply = self.b.call("POST", "/api/v1/nodes", body=body)
        assert reply.status == 201, reply.body
        self.b.made(path)
        return name, path

    def pod_body(self, name: str, node: str | None = None, **labels: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
        if node:
            spec["nodeName"] = node
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"conf-run": self.uid, **labels}},
            "spec": spec,
        }

    def pod(self, base: str, node: str | None = None, **labels: str) -> tuple[str, str]:
        name = self.name(base)
        reply = self.b.call("POST", self.pods, body=self.pod_body(name, node, **labels))
        assert reply.status == 201, reply.body
        path = f"{self.pods}/{name}"
        self.b.made(path, [("gracePeriodSeconds", "0")])
        return name, path

    @property
    def pods(self) -> str:
        return f"/api/v1/namespaces/{self.ns}/pods"

    def npp_body(self, name: str, spec: Any = None, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "apiVersion": "joulie.io/v1alpha1",
            "kind": "NodePowerProfile",
            "metadata": {"name": name, "labels": {"conf-run": self.uid}},
            "spec": spec if spec is not None else {"nodeName": name, "profile": "eco"},
        }
        body.update(extra)
        return body

    def npp(self, base: str, spec: Any = None) -> tuple[str, str]:
        name = self.name(base)
        reply = self.b.call("POST", NPP, body=self.npp_body(name, spec))
        assert reply.status == 201, reply.body
        path = f"{NPP}/{name}"
        self.b.made(path)
        return name, path


Scenario = Callable[[Script], None]
SCENARIOS: dict[str, Scenario] = {}


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS[fn.__name__] = fn
    return fn


# --- scenarios: updates and conflicts ---------------------------------------------------


@scenario
def stale_put_on_a_node(s: Script) -> None:
    _name, path = s.node("stale")
    old = s.b.call("GET", path).body
    fresh = json.loads(json.dumps(old))
    fresh["metadata"]["labels"]["step"] = "one"
    s.step("put current", "PUT", path, body=fresh, pick=["metadata.labels"])
    old["metadata"]["labels"]["step"] = "two"
    s.step("put stale", "PUT", path, body=old)
    del old["metadata"]["resourceVersion"]
    s.step("put without rv", "PUT", path, body=old, pick=["metadata.labels"])
    s.step("put other name", "PUT", path + "x", body=old)


@scenario
def stale_put_on_a_profile(s: Script) -> None:
    _name, path = s.npp("stale")
    old = s.b.call("GET", path).body
    fresh = json.loads(json.dumps(old))
    fresh["spec"]["profile"] = "performance"
    s.step("put current", "PUT", path, body=fresh, pick=["spec", "metadata.generation"])
    old["spec"]["profile"] = "eco"
    s.step("put stale", "PUT", path, body=old)
    del old["metadata"]["resourceVersion"]
    s.step("put without rv", "PUT", path, body=old)
    s.step(
        "put missing",
        "PUT",
        f"{NPP}/{s.name('missing')}",
        body={**old, "metadata": {"name": s.name("missing"), "resourceVersion": "1"}},
    )


# --- scenarios: patches -----------------------------------------------------------------


@scenario
def patches_on_a_node(s: Script) -> None:
    _name, path = s.node("patch")
    pick = ["metadata.labels"]
    s.step(
        "merge",
        "PATCH",
        path,
        body={"metadata": {"labels": {"a": "1"}}},
        content_type=MERGE,
        pick=pick,
    )
    s.step(
        "strategic",
        "PATCH",
        path,
        body={"metadata": {"labels": {"b": "2"}}},
        content_type=STRATEGIC,
        pick=pick,
    )
    s.step(
        "merge delete",
        "PATCH",
        path,
        body={"metadata": {"labels": {"a": None}}},
        content_type=MERGE,
        pick=pick,
    )
    ops = [{"op": "add", "path": "/metadata/labels/c", "value": "3"}]
    s.step("json add", "PATCH", path, body=ops, content_type=JSON_PATCH, pick=pick)
    ops = [{"op": "test", "path": "/metadata/labels/c", "value": "nope"}]
    s.step("json test fails", "PATCH", path, body=ops, content_type=JSON_PATCH)
    ops = [{"op": "remove", "path": "/metadata/labels/zzz"}]
    s.step("json remove missing", "PATCH", path, body=ops, content_type=JSON_PATCH)
    s.step(
        "merge bad label",
        "PATCH",
        path,
        body={"metadata": {"labels": {"a": "-bad-"}}},
        content_type=MERGE,
    )
    s.step(
        "merge stale rv",
        "PATCH",
        path,
        body={"metadata": {"resourceVersion": "1", "labels": {"d": "4"}}},
        content_type=MERGE,
    )
    s.step(
        "merge missing",
        "PATCH",
        path + "x",
        body={"metadata": {"labels": {"d": "4"}}},
        content_type=MERGE,
    )
    s.step("unknown type", "PATCH", path, body="{}", content_type="application/yaml")


@scenario
def patches_on_a_profile(s: Script) -> None:
    _name, path = s.npp("patch")
    pick = ["spec", "metadata.labels"]
    s.step(
        "merge",
        "PATCH",
        path,
        body={"spec": {"profile": "performance"}},
        content_type=MERGE,
        pick=pick,
    )
    s.step("strategic", "PATCH", path, body={"spec": {"profile": "eco"}}, content_type=STRATEGIC)
    ops = [{"op": "replace", "path": "/spec/profile", "value": "eco"}]
    s.step("json replace", "PATCH", path, body=ops, content_type=JSON_PATCH, pick=pick)
    s.step("merge invalid", "PATCH", path, body={"spec": {"profile": "turbo"}}, content_type=MERGE)
    ops = [{"op": "remove", "path": "/spec/nodeName"}]
    s.step("json invalid", "PATCH", path, body=ops, content_type=JSON_PATCH)
    s.step(
        "merge missing", "PATCH", path + "x", body={"spec": {"profile": "eco"}}, content_type=MERGE
    )


@scenario
def server_side_apply(s: Script) -> None:
    name = s.name("apply")
    path = f"{NPP}/{name}"
    s.b.made(path)
    doc = json.dumps(s.npp_body(name))
    s.step("apply without manager", "PATCH", path, body=doc, content_type=APPLY)
    s.step(
        "apply create",
        "PATCH",
        path,
        query=[("fieldManager", "conf")],
        body=doc,
        content_type=APPLY,
        pick=["spec"],
    )
    doc = json.dumps(s.npp_body(name, {"nodeName": name, "profile": "performance"}))
    s.step(
        "apply update",
        "PATCH",
        path,
        query=[("fieldManager", "conf")],
        body=doc,
        content_type=APPLY,
        pick=["spec"],
    )
    node, npath = s.node("apply")
    doc = json.dumps(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": {"x": "y"}}}
    )
    s.step(
        "apply node",
        "PATCH",
        npath,
        query=[("fieldManager", "conf")],
        body=doc,
        content_type=APPLY,
        pick=["metadata.labels.x"],
    )


@scenario
def status_subresource_of_nodes(s: Script) -> None:
    _name, path = s.node("status")
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    pick = ["status.conditions", "metadata.labels.conf-run"]
    s.step("patch status", "PATCH", path + "/status", body=ready, content_type=MERGE, pick=pick)
    labels = {"metadata": {"labels": {"x": "1"}}}
    s.step(
        "labels through status",
        "PATCH",
        path + "/status",
        body=labels,
        content_type=MERGE,
        pick=["metadata.labels.x"],
    )
    gone = {"status": {"conditions": None}, "metadata": {"labels": {"y": "2"}}}
    s.step(
        "status through main",
        "PATCH",
        path,
        body=gone,
        content_type=MERGE,
        pick=["status.conditions", "metadata.labels.y"],
    )
    s.step("get status", "GET", path + "/status", pick=["status.conditions", "kind"])
    s.step("status of missing", "GET", f"/api/v1/nodes/{s.name('missing')}/status")
    s.step("npp status, missing npp", "GET", f"{NPP}/{s.name('missing')}/status")
    _, npp = s.npp("status")
    s.step("npp has no status subresource", "GET", npp + "/status")
    s.step(
        "npp status patch", "PATCH", npp + "/status", body={"status": {"a": 1}}, content_type=MERGE
    )
    _, pod = s.pod("status")
    s.step(
        "pod labels through status",
        "PATCH",
        pod + "/status",
        body={"metadata": {"labels": {"x": "1"}}, "status": {"phase": "Running"}},
        content_type=MERGE,
        pick=["metadata.labels.x", "status.phase"],
    )
    s.step(
        "pod spec through status",
        "PATCH",
        pod + "/status",
        body={"spec": {"activeDeadlineSeconds": 5}},
        content_type=MERGE,
        pick=["spec.activeDeadlineSeconds"],
    )
    s.step(
        "node spec through status",
        "PATCH",
        path + "/status",
        body={"spec": {"unschedulable": True}},
        content_type=MERGE,
        pick=["spec.unschedulable"],
    )


# --- scenarios: lists -------------------------------------------------------------------


def _pages(s: Script, label: str, path: str, query: list[tuple[str, str]], limit: int) -> list[str]:
    names: list[str] = []
    token = None
    for i in range(10):
        q = [*query, ("limit", str(limit))] + ([("continue", token)] if token else [])
        reply = s.step(f"{label} page {i}", "GET", path, query=q)
        names += [item["metadata"]["name"] for item in reply.body["items"]]
        token = reply.body["metadata"].get("continue")
        if not token:
            break
    return names


@scenario
def paging_nodes_and_pods(s: Script) -> None:
    for i in range(5):
        s.node(f"page{i}")
    selector = [("labelSelector", f"conf-run={s.uid}")]
    s.note("all nodes", _pages(s, "nodes", "/api/v1/nodes", selector, 2))
    for i in range(5):
        s.pod(f"page{i}")
    s.note("all pods", _pages(s, "pods", s.pods, [], 2))
    s.step("limit 0", "GET", s.pods, query=[("limit", "0")])
    s.step("limit bad", "GET", s.pods, query=[("limit", "x")])
    s.step("limit negative", "GET", s.pods, query=[("limit", "-1")])


@scenario
def bad_and_expired_continue_tokens(s: Script) -> None:
    for i in range(3):
        s.pod(f"tok{i}")
    s.step("malformed", "GET", s.pods, query=[("limit", "1"), ("continue", "not-a-token")])
    s.step(
        "bad base64 json",
        "GET",
        s.pods,
        query=[("limit", "1"), ("continue", base64.urlsafe_b64encode(b"{}").decode())],
    )
    first = s.step("first page", "GET", s.pods, query=[("limit", "1")])
    token = first.body["metadata"]["continue"]
    s.step("second page", "GET", s.pods, query=[("limit", "1"), ("continue", token)])
    # Writes after the token, then a compaction past its revision: the token expires.
    s.pod("tok-late")
    s.b.compact()
    # compact() waits until a namespaces token expires; each resource's watch cache drops
    # its snapshots on its own, so await the pods one too (answered before it: 200).
    query = [("limit", "1"), ("continue", token)]
    wait_for(
        lambda: s.b.call("GET", s.pods, query=query).status == 410,
        timeout=60,
        interval=0.25,
        what="the pods watch cache to see the compaction",
    )
    expired = s.step("after compaction", "GET", s.pods, query=query)
    fresh = (expired.body.get("metadata") or {}).get("continue") if expired.status == 410 else None
    s.note("410 offers a fresh token", bool(fresh))


@scenario
def label_selectors(s: Script) -> None:
    s.node("lab-a", {"tier": "gold", "zone": "1"})
    s.node("lab-b", {"tier": "silver", "zone": "2"})
    s.node("lab-c", {"zone": "3"})
    run = f"conf-run={s.uid}"
    for label, sel in [
        ("equals", "tier=gold"),
        ("double equals", "tier==gold"),
        ("not equals", "tier!=gold"),
        ("exists", "tier"),
        ("not exists", "!tier"),
        ("in", "tier in (gold,silver)"),
        ("notin", "tier notin (gold)"),
        ("greater", "zone>1"),
        ("less", "zone<3"),
    ]:
        s.step(label, "GET", "/api/v1/nodes", query=[("labelSelector", f"{run},{sel}")])
    for label, sel in [("bad key", "-x=1"), ("bad op", "tier=~gold"), ("empty in", "tier in ()")]:
        s.step(label, "GET", "/api/v1/nodes", query=[("labelSelector", sel)])


@scenario
def field_selectors(s: Script) -> None:
    node, _ = s.node("fs")
    _, running = s.pod("fs-running", node)
    s.pod("fs-pending", node)
    s.pod("fs-elsewhere", s.name("other"))
    patch = {"status": {"phase": "Running"}}
    s.step(
        "status patch",
        "PATCH",
        running + "/status",
        body=patch,
        content_type=MERGE,
        pick=["status.phase"],
    )
    s.step(
        "main patch keeps status",
        "PATCH",
        running,
        body={"status": {"phase": "Failed"}, "metadata": {"labels": {"p": "1"}}},
        content_type=MERGE,
        pick=["status.phase"],
    )
    for label, sel in [
        ("node", f"spec.nodeName={node}"),
        ("not node", f"spec.nodeName!={node}"),
        ("running", "status.phase=Running"),
        ("pending on node", f"status.phase=Pending,spec.nodeName={node}"),
        ("name", f"metadata.name={s.name('fs-pending')}"),
        ("unsupported", "spec.foo=1"),
        ("bad syntax", "spec.nodeName"),
    ]:
        s.step(label, "GET", s.pods, query=[("fieldSelector", sel)])
    s.step(
        "pods all namespaces",
        "GET",
        "/api/v1/pods",
        query=[("fieldSelector", f"spec.nodeName={node}")],
    )
    s.step("npp by name", "GET", NPP, query=[("fieldSelector", f"metadata.name={s.name('none')}")])
    s.step("npp unsupported", "GET", NPP, query=[("fieldSelector", f"spec.nodeName={node}")])
    s.step(
        "node unschedulable",
        "GET",
        "/api/v1/nodes",
        query=[("fieldSelector", f"spec.unschedulable=true,metadata.name={node}")],
    )
    s.step(
        "node unsupported",
        "GET",
        "/api/v1/nodes",
        query=[("fieldSelector", "status.phase=Running")],
    )


# --- scenarios: dry run, existence ----------------------------------------------------


@scenario
def dry_run_persists_nothing(s: Script) -> None:
    dry = [("dryRun", "All")]
    name = s.name("dry")
    path = f"{NPP}/{name}"
    s.step("create", "POST", NPP, query=dry, body=s.npp_body(name), pick=["spec", "metadata.name"])
    s.step("get after create", "GET", path)
    s.npp("dry")
    current = s.b.call("GET", path).body
    rv = current["metadata"]["resourceVersion"]
    current["spec"]["profile"] = "performance"
    s.step("update", "PUT", path, query=dry, body=current, pick=["spec.profile"])
    s.step(
        "patch",
        "PATCH",
        path,
        query=dry,
        body={"spec": {"cpu": {"packagePowerCapWatts": 100}}},
        content_type=MERGE,
        pick=["spec"],
    )
    s.step("delete", "DELETE", path, query=dry)
    after = s.step("get after all", "GET", path, pick=["spec"])
    s.note("rv unchanged", after.body["metadata"]["resourceVersion"] == rv)
    s.step("bad dry run", "POST", NPP, query=[("dryRun", "Some")], body=s.npp_body(s.name("dry2")))
    s.step(
        "dry invalid", "POST", NPP, query=dry, body=s.npp_body(s.name("dry3"), {"profile": "eco"})
    )
    _, pod = s.pod("dry")
    s.step("pod delete dry", "DELETE", pod, query=dry, pick=["metadata.name"])
    s.step("pod still there", "GET", pod, pick=["metadata.name"])
    s.step(
        "create pod dry",
        "POST",
        s.pods,
        query=dry,
        body=s.pod_body(s.name("dry-new")),
        pick=["metadata.name", "status.phase"],
    )
    s.step("get dry pod", "GET", f"{s.pods}/{s.name('dry-new')}")


@scenario
def existing_and_missing_names(s: Script) -> None:
    node, npath = s.node("dup")
    s.step("node again", "POST", "/api/v1/nodes", body={"metadata": {"name": node}})
    pod, ppath = s.pod("dup")
    s.step("pod again", "POST", s.pods, body=s.pod_body(pod))
    npp, nppath = s.npp("dup")
    s.step("npp again", "POST", NPP, body=s.npp_body(npp))
    for label, path in [
        ("node", "/api/v1/nodes/"),
        ("pod", s.pods + "/"),
        ("npp", NPP + "/"),
        ("event", f"/api/v1/namespaces/{s.ns}/events/"),
        ("events.k8s.io", f"/apis/events.k8s.io/v1/namespaces/{s.ns}/events/"),
    ]:
        s.step(f"get missing {label}", "GET", path + s.name("missing"))
        s.step(f"delete missing {label}", "DELETE", path + s.name("missing"))
    s.step("delete node", "DELETE", npath, pick=["metadata.name"])
    s.step("delete npp", "DELETE", nppath, pick=["metadata.name"])
    s.step(
        "delete pod", "DELETE", ppath, query=[("gracePeriodSeconds", "0")], pick=["metadata.name"]
    )
    s.step("create without name", "POST", NPP, body={**s.npp_body(""), "metadata": {}})
    prefix = f"gen-{s.uid}-"
    generated = s.step(
        "generateName",
        "POST",
        "/api/v1/nodes",
        body={"metadata": {"generateName": prefix}},
        pick=["kind", "metadata.generateName"],
    )
    name = _get(generated.body, "metadata.name") if generated.status == 201 else None
    if name is not None:
        s.b.made(f"/api/v1/nodes/{name}")
    # (the random suffix differs between servers; its place and length must not)
    suffix = name[len(prefix) :] if isinstance(name, str) and name.startswith(prefix) else None
    s.note("generated name suffix", None if suffix is None else (len(suffix), suffix.isalnum()))
    s.step(
        "get generated",
        "GET",
        f"/api/v1/nodes/{name}",
        pick=["metadata.generateName"],
    )


@scenario
def leases_and_delete_preconditions(s: Script) -> None:
    leases = f"/apis/coordination.k8s.io/v1/namespaces/{s.ns}/leases"
    name = s.name("lease")
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name},
        "spec": {"holderIdentity": "w1", "leaseDurationSeconds": 15},
    }
    created = s.step("create lease", "POST", leases, body=body, pick=["spec"])
    if created.status == 201:
        s.b.made(f"{leases}/{name}")
    stale = created.body
    fresh = json.loads(json.dumps(stale))
    fresh["spec"]["holderIdentity"] = "w2"
    s.step("take over", "PUT", f"{leases}/{name}", body=fresh, pick=["spec.holderIdentity"])
    stale["spec"]["holderIdentity"] = "w3"
    s.step("stale take over", "PUT", f"{leases}/{name}", body=stale)
    s.step("lease again", "POST", leases, body=body)
    _, path = s.node("pre")
    wrong = {"preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}}
    s.step("delete with wrong uid", "DELETE", path, body=wrong)
    wrong = {"preconditions": {"resourceVersion": "1"}}
    s.step("delete with stale rv", "DELETE", path, body=wrong)
    s.step("still there", "GET", path, pick=["metadata.name"])
    _, npp = s.npp("pre")
    s.step("delete npp with stale rv", "DELETE", npp, body=wrong)
    s.step("delete npp dry run", "DELETE", npp, query=[("dryRun", "All")])
    s.step("delete npp bad dry run", "DELETE", npp, query=[("dryRun", "Maybe")])


@scenario
def malformed_requests(s: Script) -> None:
    _name, path = s.npp("bad")
    current = s.b.call("GET", path).body
    s.step(
        "create with resourceVersion",
        "POST",
        NPP,
        body={
            **s.npp_body(s.name("rv")),
            "metadata": {"name": s.name("rv"), "resourceVersion": "5"},
        },
    )
    s.step(
        "put name mismatch",
        "PUT",
        path,
        body={**current, "metadata": {**current["metadata"], "name": s.name("other")}},
    )
    s.step("merge patch with a list", "PATCH", path, body=[{"spec": {}}], content_type=MERGE)
    s.step("merge patch null spec", "PATCH", path, body={"spec": None}, content_type=MERGE)
    s.step(
        "json patch bad op",
        "PATCH",
        path,
        body=[{"op": "jump", "path": "/spec"}],
        content_type=JSON_PATCH,
    )
    s.step(
        "json patch add under missing parent",
        "PATCH",
        path,
        body=[{"op": "add", "path": "/spec/x/y", "value": 1}],
        content_type=JSON_PATCH,
    )
    s.step(
        "labels not a string map",
        "PATCH",
        path,
        body={"metadata": {"labels": {"a": 1}}},
        content_type=MERGE,
    )
    node, npath = s.node("bad")
    s.step(
        "node name in body differs",
        "PUT",
        npath,
        body={"apiVersion": "v1", "kind": "Node", "metadata": {"name": node + "x"}},
    )
    labelled = {"metadata": {"name": s.name("boolean"), "labels": {"a": True}}}
    s.step("create node with a boolean label", "POST", "/api/v1/nodes", body=labelled)
    for label, ctype in (("merge", MERGE), ("strategic", STRATEGIC)):
        patch = {"metadata": {"labels": {"joulie.io/draining": True}}}
        s.step(f"node boolean label {label}", "PATCH", npath, body=patch, content_type=ctype)
    s.step(
        "pod without containers",
        "POST",
        s.pods,
        body={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": s.name("empty")}, "spec": {}},
    )
    s.step(
        "pod namespace mismatch",
        "POST",
        s.pods,
        body={
            **s.pod_body(s.name("ns")),
            "metadata": {"name": s.name("ns"), "namespace": "elsewhere"},
        },
    )


# --- scenarios: events ------------------------------------------------------------------


def _core_event(s: Script, name: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": s.ns},
        "involvedObject": {
            "kind": "Pod",
            "name": s.name("ev"),
            "namespace": s.ns,
            "apiVersion": "v1",
        },
        "reason": "ProfileChanged",
        "message": "eco",
        "type": "Normal",
        "source": {"component": "joulie"},
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:00:00Z",
        "count": 1,
    }
    body.update(overrides)
    return body


def _new_event(s: Script, name: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": s.ns},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "joulie.io/operator",
        "reportingInstance": "joulie-1",
        "action": "SetProfile",
        "reason": "ProfileChanged",
        "regarding": {"kind": "Pod", "name": s.name("ev"), "namespace": s.ns, "apiVersion": "v1"},
        "note": "eco",
        "type": "Normal",
    }
    body.update(overrides)
    return body


@scenario
def events_in_both_apis(s: Script) -> None:
    core = f"/api/v1/namespaces/{s.ns}/events"
    new = f"/apis/events.k8s.io/v1/namespaces/{s.ns}/events"
    for label, body in [
        ("core valid", _core_event(s, s.name("core"))),
        ("core bad type", _core_event(s, s.name("core-type"), type="Loud")),
        ("core no involvedObject", _core_event(s, s.name("core-noobj"), involvedObject={})),
        (
            "core wrong namespace",
            _core_event(
                s,
                s.name("core-ns"),
                involvedObject={"kind": "Pod", "name": "p", "namespace": "elsewhere"},
            ),
        ),
        (
            "core node event outside default",
            _core_event(
                s, s.name("core-node"), involvedObject={"kind": "Node", "name": s.name("ev")}
            ),
        ),
        (
            "core with eventTime, no reporting",
            _core_event(s, s.name("core-et"), eventTime="2026-01-01T00:00:00.000000Z"),
        ),
    ]:
        reply = s.step(
            label, "POST", core, body=body, pick=["reason", "type", "involvedObject.name"]
        )
        if reply.status == 201:
            s.b.made(f"{core}/{body['metadata']['name']}")
    for label, body in [
        ("new valid", _new_event(s, s.name("new"))),
        (
            "new no eventTime",
            {k: v for k, v in _new_event(s, s.name("new-t")).items() if k != "eventTime"},
        ),
        (
            "new no reportingController",
            {k: v for k, v in _new_event(s, s.name("new-c")).items() if k != "reportingController"},
        ),
        (
            "new no action",
            {k: v for k, v in _new_event(s, s.name("new-a")).items() if k != "action"},
        ),
        ("new bad type", _new_event(s, s.name("new-ty"), type="Loud")),
    ]:
        reply = s.step(
            label, "POST", new, body=body, pick=["reason", "type", "regarding.name", "note"]
        )
        if reply.status == 201:
            s.b.made(f"{new}/{body['metadata']['name']}")
    node_event = _core_event(
        s, s.name("node"), involvedObject={"kind": "Node", "name": s.name("ev")}
    )
    node_event["metadata"]["namespace"] = "default"
    reply = s.step(
        "core node event in default",
        "POST",
        "/api/v1/namespaces/default/events",
        body=node_event,
        pick=["involvedObject"],
    )
    if reply.status == 201:
        s.b.made(f"/api/v1/namespaces/default/events/{s.name('node')}")
    bare = {k: v for k, v in _new_event(s, s.name("bare")).items() if k != "regarding"}
    bare["metadata"]["namespace"] = "default"
    reply = s.step(
        "new without regarding in default",
        "POST",
        "/apis/events.k8s.io/v1/namespaces/default/events",
        body=bare,
        pick=["regarding"],
    )
    if reply.status == 201:
        s.b.made(f"/api/v1/namespaces/default/events/{s.name('bare')}")
        s.step(
            "read it as core",
            "GET",
            f"/api/v1/namespaces/default/events/{s.name('bare')}",
            pick=["involvedObject", "eventTime", "reportingComponent"],
        )
    s.step("list core", "GET", core)
    s.step("list new", "GET", new)
    s.step(
        "get new as core",
        "GET",
        f"{core}/{s.name('new')}",
        pick=["reason", "message", "involvedObject.name", "reportingComponent", "action"],
    )
    s.step(
        "get core as new",
        "GET",
        f"{new}/{s.name('core')}",
        pick=["reason", "note", "regarding.name", "deprecatedSource.component"],
    )
    s.step(
        "patch core through new",
        "PATCH",
        f"{new}/{s.name('core')}",
        body={"note": "performance"},
        content_type=MERGE,
        pick=["note", "regarding.name"],
    )
    s.step(
        "read it back as core",
        "GET",
        f"{core}/{s.name('core')}",
        pick=["message", "involvedObject.name"],
    )
    s.step("new by name", "GET", new, query=[("fieldSelector", f"metadata.name={s.name('new')}")])
    s.step("new by reason", "GET", new, query=[("fieldSelector", "reason=ProfileChanged")])
    s.step(
        "new by regarding", "GET", new, query=[("fieldSelector", f"regarding.name={s.name('ev')}")]
    )
    s.step(
        "new by involvedObject",
        "GET",
        new,
        query=[("fieldSelector", f"involvedObject.name={s.name('ev')}")],
    )
    s.step("core by reason", "GET", core, query=[("fieldSelector", "reason=ProfileChanged")])
    s.step(
        "core by object",
        "GET",
        core,
        query=[("fieldSelector", f"involvedObject.name={s.name('ev')}")],
    )


# --- scenarios: the NodePowerProfile validation table (issue 9 item 5) -----------------

_NPP_TABLE: list[tuple[str, Any, dict[str, Any]]] = [
    ("valid", {"profile": "eco"}, {}),
    ("valid with cap", {"profile": "performance", "cpu": {"packagePowerCapWatts": 250}}, {}),
    ("valid with policy", {"profile": "eco", "policy": {"name": "static"}}, {}),
    ("missing nodeName", {"nodeName": None, "profile": "eco"}, {}),
    ("empty nodeName", {"nodeName": "", "profile": "eco"}, {}),
    ("missing profile", {"profile": None}, {}),
    ("bad profile", {"profile": "turbo"}, {}),
    ("cap 0", {"profile": "eco", "cpu": {"packagePowerCapWatts": 0}}, {}),
    ("cap negative", {"profile": "eco", "cpu": {"packagePowerCapWatts": -5}}, {}),
    ("cap as string", {"profile": "eco", "cpu": {"packagePowerCapWatts": "100"}}, {}),
    ("cap fractional", {"profile": "eco", "cpu": {"packagePowerCapWatts": 99.5}}, {}),
    ("profile as number", {"profile": 1}, {}),
    ("spec as string", "eco", {}),
    ("missing spec", None, {"spec": None}),
    ("unknown spec field", {"profile": "eco", "turbo": True}, {}),
    ("unknown cpu field", {"profile": "eco", "cpu": {"packagePowerCapWatts": 5, "gpu": 1}}, {}),
    ("unknown top-level field", {"profile": "eco"}, {"extra": {"a": 1}}),
    ("status kept", {"profile": "eco"}, {"status": {"applied": True}}),
    ("two errors", {"nodeName": "", "profile": "turbo"}, {}),
]


def _npp_case(
    s: Script, label: str, spec: Any, extra: dict[str, Any], validation: str | None
) -> None:
    name = s.name(f"v{len(s.steps)}")
    if isinstance(spec, dict):
        spec = {"nodeName": name, **spec}
        spec = {k: v for k, v in spec.items() if v is not None}
    body = s.npp_body(name, spec if spec is not None else {})
    for key, value in extra.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    query = [("fieldValidation", validation)] if validation else []
    reply = s.step(label, "POST", NPP, query=query, body=body, pick=["spec", "status", "extra"])
    if reply.status == 201:
        s.b.made(f"{NPP}/{name}")
        s.note(f"{label}: warning header", "Warning" in reply.headers or "warning" in reply.headers)


for _mode in (None, "Ignore", "Warn", "Strict"):

    def _table(s: Script, mode: str | None = _mode) -> None:
        for label, spec, extra in _NPP_TABLE:
            _npp_case(s, label, spec, extra, mode)

    _table.__name__ = f"npp_validation_{(_mode or 'default').lower()}"
    scenario(_table)


@scenario
def npp_update_validation(s: Script) -> None:
    _name, path = s.npp("upd")
    current = s.b.call("GET", path).body
    current["spec"]["turbo"] = True
    s.step("update unknown field", "PUT", path, body=current, pick=["spec"])
    current = s.b.call("GET", path).body
    current["spec"]["turbo"] = True
    s.step(
        "update unknown strict", "PUT", path, query=[("fieldValidation", "Strict")], body=current
    )
    s.step(
        "patch unknown strict",
        "PATCH",
        path,
        query=[("fieldValidation", "Strict")],
        body={"spec": {"turbo": 1}},
        content_type=MERGE,
    )
    s.step(
        "patch bad validation mode",
        "PATCH",
        path,
        query=[("fieldValidation", "Loud")],
        body={"spec": {"profile": "eco"}},
        content_type=MERGE,
    )
    s.step("wrong kind", "POST", NPP, body={**s.npp_body(s.name("wk")), "kind": "Node"})
    s.step(
        "no kind",
        "POST",
        NPP,
        body={k: v for k, v in s.npp_body(s.name("nk")).items() if k != "kind"},
    )
    s.step("bad name", "POST", NPP, body=s.npp_body("Bad_Name"))


# --- the one test body ------------------------------------------------------------------


def run(backend: Backend, ns: str, uid: str, fn: Scenario) -> list[tuple[str, dict[str, Any]]]:
    script = Script(backend, ns, uid)
    try:
        fn(script)
    finally:
        backend.clean()
    return script.steps


@pytest.mark.parametrize("scenario_name", sorted(SCENARIOS))
def test_the_emulator_answers_like_the_real_server(
    scenario_name: str, emulator_backend: Backend, real_backend: Backend, namespace: str
) -> None:
    uid = secrets.token_hex(3)
    fn = SCENARIOS[scenario_name]
    real = run(real_backend, namespace, uid, fn)
    emulated = run(emulator_backend, namespace, uid, fn)
    assert [label for label, _ in emulated] == [label for label, _ in real]
    differences = [
        f"{label}: {key}: real={r.get(key)!r} emulator={e.get(key)!r}"
        for (label, r), (_, e) in zip(real, emulated, strict=True)
        for key in sorted(set(r) | set(e))
        if r.get(key) != e.get(key)
    ]
    assert not differences, "\n".join(differences)
