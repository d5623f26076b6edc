"""The reference operator's call pattern, reproduced lean: one thread, sequential calls.

What the reference Go operator does every tick (one goroutine, no pagination, no
caching), against the same API server and objects as joulie-tasks:

1. list the nodes matching NODE_SELECTOR (one request), keep the schedulable,
   unreserved ones, sorted;
2. queue-aware only: one list of all pods (to count performance demand);
3. plan; for every node planned eco, list its pods with
   ``fieldSelector=spec.nodeName=<node>`` (the downgrade guard);
4. per eligible node, in order: GET its NodePowerProfile, POST it when missing,
   else PUT it (every tick, changed or not); GET the node; PATCH its two labels
   when they differ.

Written with ``http.client`` and plain JSON dicts (no client model objects), so a
comparison with joulie-tasks measures the call pattern, not Python client overhead.
It writes exactly the objects joulie-tasks writes (same names, spec, labels, cap
rendering), so both can take turns on one cluster without undoing each other.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

PROFILE_KEY = "joulie.io/power-profile"
MANAGED_BY = ("joulie.io/managed-by", "operator")
NPP_PATH = "/apis/joulie.io/v1alpha1/nodepowerprofiles"
_INVALID = re.compile(r"[^a-z0-9-]")


@dataclass(frozen=True)
class RefConfig:
    """The reference's knobs (docs/SPEC.md §3 names), with SPEC defaults."""

    node_selector: str = "joulie.io/managed=true"
    reserved_label_key: str = "joulie.io/reserved"
    profile_label: str = "joulie.io/power-profile"
    draining_label: str = "joulie.io/draining"
    policy: str = "static_partition"
    static_hp_frac: float = 0.5
    queue_hp_base_frac: float = 0.6
    queue_hp_min: int = 1
    queue_hp_max: int = 1_000_000
    queue_perf_per_hp_node: int = 10
    performance_cap_watts: float = 5000.0
    eco_cap_watts: float = 120.0


@dataclass
class RefTick:
    """What one reference tick did: wall time, requests by (verb, resource), writes."""

    wall_s: float = 0.0
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    writes: int = 0
    nodes: int = 0


class LeanClient:
    """One keep-alive HTTP/1.1 connection; bodies are bytes in, bytes out."""

    def __init__(self, url: str, *, timeout: float = 30.0, token: str | None = None) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._timeout = timeout
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def close(self) -> None:
        self._conn.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = content_type
        for attempt in (1, 2):  # one reconnect, as Go's transport does on a stale connection
            try:
                self._conn.request(method, path, body=data, headers=headers)
                resp = self._conn.getresponse()
                raw = resp.read()
                break
            except (ConnectionError, http.client.HTTPException):
                self._conn.close()
                self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=self._timeout
                )
                if attempt == 2:
                    raise
        return resp.status, (json.loads(raw) if raw else None)


def npp_name(node: str) -> str:
    return "node-" + _INVALID.sub("-", node.lower()).strip("-")


def round_half_away(x: float) -> int:
    return math.floor(abs(x) + 0.5) * (1 if x >= 0 else -1)


def _requirements(pod: dict[str, Any]) -> list[tuple[str, set[str]]]:
    spec = pod.get("spec") or {}
    terms = (
        ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {}
    ).get("nodeSelectorTerms") or []
    out = []
    for term in terms:
        for expr in (term or {}).get("matchExpressions") or []:
            if expr.get("key") == PROFILE_KEY and expr.get("values"):
                out.append((str(expr.get("operator")), {str(v).strip() for v in expr["values"]}))
    return out


def is_performance_only(pod: dict[str, Any]) -> bool:
    """docs/SPEC.md §4: the pod excludes eco (nodeSelector performance, or NotIn eco /
    In w/o eco)."""
    selected = str(((pod.get("spec") or {}).get("nodeSelector") or {}).get(PROFILE_KEY, ""))
    if selected.strip() == "performance":
        return True
    return any(
        (op == "NotIn" and "eco" in values) or (op == "In" and "eco" not in values)
        for op, values in _requirements(pod)
    )


def is_active(pod: dict[str, Any]) -> bool:
    meta = pod.get("metadata") or {}
    phase = (pod.get("status") or {}).get("phase")
    return meta.get("deletionTimestamp") is None and phase not in ("Succeeded", "Failed")


def _hp_count(cfg: RefConfig, n: int, perf_pods: int) -> int:
    if cfg.policy == "queue_aware_v1":
        base = round_half_away(n * min(max(cfg.queue_hp_base_frac, 0.0), 1.0))
        per = cfg.queue_perf_per_hp_node if cfg.queue_perf_per_hp_node > 0 else 1
        hp = max(base, math.ceil(perf_pods / per))
        lo = max(cfg.queue_hp_min, 0)
        hi = cfg.queue_hp_max if cfg.queue_hp_max > 0 else n
        hp = min(max(hp, lo), max(hi, lo))
        return min(max(hp, 0), n)
    return min(max(round_half_away(n * min(max(cfg.static_hp_frac, 0.0), 1.0)), 0), n)


def _cap(watts: float) -> float | int:
    return int(watts) if float(watts).is_integer() else watts


def run_tick(client: LeanClient, cfg: RefConfig) -> RefTick:
    """One reference tick, start to end; raises on any unexpected API answer."""
    out = RefTick()
    started = time.perf_counter()

    def call(verb: str, resource: str, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        out.requests[(verb, resource)] += 1
        status, doc = client.request(method, path, body, **kw)
        if status == 404 and verb == "get":
            return None
        if not 200 <= status < 300:
            raise RuntimeError(f"reference: {method} {path}: {status} {doc}")
        return doc

    nodes = call("list", "nodes", "GET", "/api/v1/nodes?labelSelector=" + quote(cfg.node_selector))
    eligible = sorted(
        (
            n
            for n in nodes["items"]
            if not (n.get("spec") or {}).get("unschedulable")
            and (n["metadata"].get("labels") or {}).get(cfg.reserved_label_key) != "true"
        ),
        key=lambda n: n["metadata"]["name"].encode(),
    )
    out.nodes = len(eligible)
    perf_pods = 0
    if cfg.policy == "queue_aware_v1":
        pods = call("list", "pods", "GET", "/api/v1/pods")["items"]
        perf_pods = sum(1 for p in pods if is_active(p) and is_performance_only(p))
    hp = _hp_count(cfg, len(eligible), perf_pods)
    provenance = "queue-aware-v1" if cfg.policy == "queue_aware_v1" else "static-partition-v1"

    desired: list[tuple[str, str, bool]] = []  # node, profile, draining
    for i, node in enumerate(eligible):
        name = node["metadata"]["name"]
        if i < hp:
            desired.append((name, "performance", False))
            continue
        selector = quote(f"spec.nodeName={name}")
        on_node = call("list", "pods", "GET", f"/api/v1/pods?fieldSelector={selector}")["items"]
        busy = any(is_active(p) and is_performance_only(p) for p in on_node)
        desired.append((name, "eco", busy))

    for name, profile, draining in desired:
        cap = cfg.performance_cap_watts if profile == "performance" else cfg.eco_cap_watts
        obj_name = npp_name(name)
        body: dict[str, Any] = {
            "apiVersion": "joulie.io/v1alpha1",
            "kind": "NodePowerProfile",
            "metadata": {"name": obj_name, "labels": {MANAGED_BY[0]: MANAGED_BY[1]}},
            "spec": {
                "nodeName": name,
                "profile": profile,
                "cpu": {"packagePowerCapWatts": _cap(cap)},
                "policy": {"name": provenance},
            },
        }
        current = call("get", "nodepowerprofiles", "GET", f"{NPP_PATH}/{obj_name}")
        if current is None:
            call("create", "nodepowerprofiles", "POST", NPP_PATH, body)
        else:
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            call("update", "nodepowerprofiles", "PUT", f"{NPP_PATH}/{obj_name}", body)
        out.writes += 1
        node_obj = call("get", "nodes", "GET", f"/api/v1/nodes/{name}")
        labels = (node_obj or {}).get("metadata", {}).get("labels") or {}
        wanted = {cfg.profile_label: profile, cfg.draining_label: "true" if draining else "false"}
        if any(labels.get(k) != v for k, v in wanted.items()):
            patch = {"metadata": {"labels": wanted}}
            call(
                "patch",
                "nodes",
                "PATCH",
                f"/api/v1/nodes/{name}",
                patch,
                content_type="application/merge-patch+json",
            )
            out.writes += 1
    out.wall_s = time.perf_counter() - started
    return out
