"""A real kube-apiserver for the benchmark: set-up, a user's cluster, the server's metrics.

The control plane itself is ``testbed/joulie_testbed/controlplane.py`` (one copy, shared with
the envtest tier). This module does what a cluster admin and a cluster's users would
do to it, over HTTPS with plain JSON (``http.client``, one keep-alive connection per
thread): apply the operator's CustomResourceDefinition, ServiceAccount, ClusterRole
and binding from ``deploy/``, issue the ServiceAccount a token (TokenRequest API),
and create nodes and pods the way kubelets and the scheduler would have left them
(pods bound through ``spec.nodeName`` at creation, their phase set through the
``/status`` subresource; there is no kubelet).

It also reads the server's own account of the traffic from ``/metrics``:
``apiserver_request_total`` and the ``apiserver_request_duration_seconds``
histogram, diffed around a measured window.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench import REPO
from joulie_testbed.procs import wait_for

#: ``deploy/`` files the operator needs on the server (the rest are its Deployments).
OPERATOR_MANIFESTS = (
    "namespace.yaml",
    "crd/nodepowerprofiles.yaml",
    "serviceaccount.yaml",
    "clusterrole.yaml",
    "clusterrolebinding.yaml",
)
OPERATOR_NAMESPACE = "joulie-system"  # deploy/kustomization.yaml's namespace
OPERATOR_ACCOUNT = "joulie-tasks"
CRD_NAME = "nodepowerprofiles.joulie.io"
NPP_PATH = "/apis/joulie.io/v1alpha1/nodepowerprofiles"
_COLLECTIONS = {
    "Namespace": ("/api/v1/namespaces", False),
    "ServiceAccount": ("/api/v1/namespaces/{ns}/serviceaccounts", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1/clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", False),
    "CustomResourceDefinition": (
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        False,
    ),
}


class ApiError(RuntimeError):
    pass


class JsonClient:
    """HTTPS + bearer token + JSON; one keep-alive connection per calling thread."""

    def __init__(self, server: str, *, ca_file: Path, token: str, timeout: float = 120) -> None:
        host_port = server.removeprefix("https://").rstrip("/")
        host, _, port = host_port.rpartition(":")
        self._host, self._port = host, int(port)
        self._ctx = ssl.create_default_context(cafile=str(ca_file))
        self._token = token
        self._timeout = timeout
        self._local = threading.local()
        self._all: list[http.client.HTTPSConnection] = []
        self._lock = threading.Lock()

    def with_token(self, token: str) -> JsonClient:
        """The same server and CA, another identity."""
        other = JsonClient.__new__(JsonClient)
        other.__dict__.update(self.__dict__)
        other._token = token
        other._local = threading.local()
        other._all = []
        other._lock = threading.Lock()
        return other

    def _conn(self) -> http.client.HTTPSConnection:
        conn: http.client.HTTPSConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection(
                self._host, self._port, context=self._ctx, timeout=self._timeout
            )
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        headers = {"Accept": "application/json", "Authorization": f"Bearer {self._token}"}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = content_type
        for attempt in (1, 2):  # one reconnect on a connection the server closed
            conn = self._conn()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (ConnectionError, http.client.HTTPException):
                conn.close()
                if attempt == 2:
                    raise
        return resp.status, (json.loads(raw) if raw else None)

    def must(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        ok: Sequence[int] = (200, 201),
        content_type: str = "application/json",
    ) -> Any:
        status, answer = self.request(method, path, body, content_type=content_type)
        if status not in ok:
            message = answer.get("message") if isinstance(answer, dict) else answer
            raise ApiError(f"{method} {path}: {status} {message}")
        return answer


# --- set-up -------------------------------------------------------------------------------


def operator_manifests(deploy: Path = REPO / "deploy") -> list[dict[str, Any]]:
    """The operator's own objects from ``deploy/``, namespaced as kustomize would."""
    docs: list[dict[str, Any]] = []
    for name in OPERATOR_MANIFESTS:
        for doc in yaml.safe_load_all((deploy / name).read_text()):
            if not doc:
                continue
            if _COLLECTIONS[doc["kind"]][1]:
                doc["metadata"]["namespace"] = OPERATOR_NAMESPACE
            docs.append(doc)
    return docs


def apply(api: JsonClient, docs: Iterable[Mapping[str, Any]]) -> None:
    """Create each object (an existing one is left as it is)."""
    for doc in docs:
        path, namespaced = _COLLECTIONS[doc["kind"]]
        if namespaced:
            path = path.format(ns=doc["metadata"]["namespace"])
        api.must("POST", path, doc, ok=(201, 409))


def install_operator(admin: JsonClient, *, token_seconds: int = 3600) -> str:
    """Apply the CRD and RBAC from ``deploy/``; a token of the operator's ServiceAccount.

    Returns once the CRD serves and the ServiceAccount may list nodes (the RBAC
    authorizer sees new bindings through its informers, a moment later).
    """
    apply(admin, operator_manifests())

    def established() -> bool:
        crd = admin.must(
            "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}"
        )
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_for(established, timeout=60, interval=0.1, what=f"CRD {CRD_NAME} established")
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": token_seconds},
    }
    answer = admin.must(
        "POST",
        f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/serviceaccounts/{OPERATOR_ACCOUNT}/token",
        request,
    )
    token = str(answer["status"]["token"])
    operator = admin.with_token(token)
    try:
        for path in ("/api/v1/nodes?limit=1", f"{NPP_PATH}?limit=1"):
            wait_for(
                lambda p=path: operator.request("GET", p)[0] == 200,  # type: ignore[misc]
                timeout=60,
                interval=0.1,
                what=f"the operator's token to be allowed GET {path}",
            )
    finally:
        operator.close()
    return token


# --- a user's cluster ---------------------------------------------------------------------


@dataclass
class LoadStats:
    nodes: int = 0
    pods: int = 0
    statuses: int = 0
    namespaces: int = 0
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        return self.nodes + self.pods + self.statuses + self.namespaces


def _creatable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What a client sends on create: no status (the server resets a pod's anyway)."""
    return {k: v for k, v in obj.items() if k != "status"}


def load_cluster(
    api: JsonClient,
    nodes: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    *,
    threads: int = 8,
) -> LoadStats:
    """Create the nodes (with their status: Ready, capacity), the pods' namespaces,
    the pods (bound through ``spec.nodeName``), then each non-Pending pod's phase
    through ``PATCH …/pods/<name>/status``, on a pool of ``threads`` connections."""
    stats = LoadStats()
    started = time.monotonic()
    namespaces = sorted({p["metadata"]["namespace"] for p in pods})
    for ns in namespaces:
        api.must("POST", "/api/v1/namespaces", {"metadata": {"name": ns}}, ok=(201, 409))
        stats.namespaces += 1

    def node(obj: Mapping[str, Any]) -> None:
        api.must("POST", "/api/v1/nodes", dict(obj))

    def pod(obj: Mapping[str, Any]) -> bool:
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        api.must("POST", f"/api/v1/namespaces/{ns}/pods", _creatable(obj))
        phase = (obj.get("status") or {}).get("phase", "Pending")
        if phase == "Pending":
            return False
        api.must(
            "PATCH",
            f"/api/v1/namespaces/{ns}/pods/{name}/status",
            {"status": {"phase": phase}},
            ok=(200,),
            content_type="application/merge-patch+json",
        )
        return True

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(node, nodes))
        stats.nodes = len(nodes)
        stats.statuses = sum(pool.map(pod, pods))
        stats.pods = len(pods)
    stats.seconds = time.monotonic() - started
    return stats


# --- the server's own metrics -------------------------------------------------------------

_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
REQUEST_TOTAL = "apiserver_request_total"
DURATION = "apiserver_request_duration_seconds"
Labels = tuple[tuple[str, str], ...]


@dataclass
class Scrape:
    """The series of interest from one ``/metrics`` read: name → labels → value."""

    series: dict[str, dict[Labels, float]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, names: tuple[str, ...] = (REQUEST_TOTAL, DURATION)) -> Scrape:
        out = cls()
        for line in text.splitlines():
            if not line.startswith(names):
                continue
            head, _, value = line.rpartition(" ")
            name, _, labels = head.partition("{")
            out.series.setdefault(name, {})[tuple(sorted(_LABEL.findall(labels)))] = float(value)
        return out

    def minus(self, before: Scrape) -> Scrape:
        out = Scrape()
        for name, rows in self.series.items():
            old = before.series.get(name, {})
            diff = {k: v - old.get(k, 0.0) for k, v in rows.items()}
            out.series[name] = {k: v for k, v in diff.items() if v}
        return out

    def plus(self, other: Scrape) -> Scrape:
        out = Scrape({name: dict(rows) for name, rows in self.series.items()})
        for name, rows in other.series.items():
            mine = out.series.setdefault(name, {})
            for k, v in rows.items():
                mine[k] = mine.get(k, 0.0) + v
        return out

    def rows(self, name: str) -> Iterable[tuple[dict[str, str], float]]:
        for labels, value in self.series.get(name, {}).items():
            yield dict(labels), value


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """Prometheus' ``histogram_quantile``: linear interpolation inside the bucket
    holding rank ``q * count``; buckets are (upper bound, cumulative count), sorted."""
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(upper):
                return lower  # beyond the last finite bound: its bound, as Prometheus does
            inside = cumulative - below
            return lower + (upper - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = upper, cumulative
    return lower


@dataclass
class Latency:
    """The server's own request duration for one kind of request, in a window."""

    count: int
    mean_s: float
    p50_s: float
    p90_s: float
    p99_s: float

    def to_json(self) -> dict[str, float]:
        return {
            "count": self.count,
            "mean_s": self.mean_s,
            "p50_s": self.p50_s,
            "p90_s": self.p90_s,
            "p99_s": self.p99_s,
        }


def latencies(window: Scrape, keep: Callable[[dict[str, str]], str | None]) -> dict[str, Latency]:
    """Duration percentiles per group; ``keep(labels)`` names a series' group or drops it."""
    buckets: dict[str, dict[float, float]] = {}
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for labels, value in window.rows(DURATION + "_bucket"):
        group = keep(labels)
        if group is not None:
            le = float(labels["le"])
            per = buckets.setdefault(group, {})
            per[le] = per.get(le, 0.0) + value
    for suffix, into in (("_sum", sums), ("_count", counts)):
        for labels, value in window.rows(DURATION + suffix):
            group = keep(labels)
            if group is not None:
                into[group] = into.get(group, 0.0) + value
    out = {}
    for group, per in buckets.items():
        ordered = sorted(per.items())
        n = counts.get(group, 0.0)
        if not n:
            continue
        out[group] = Latency(
            count=int(n),
            mean_s=sums.get(group, 0.0) / n,
            p50_s=quantile(0.5, ordered),
            p90_s=quantile(0.9, ordered),
            p99_s=quantile(0.99, ordered),
        )
    return out


def buckets_bounds(scrape: Scrape) -> list[float]:
    """The histogram's finite upper bounds, as this server build exports them."""
    bounds = {float(dict(k)["le"]) for k in scrape.series.get(DURATION + "_bucket", {})}
    return sorted(b for b in bounds if not math.isinf(b))
