"""``/_emulator/...``: the test controls of ``Emulator`` over HTTP, plus a client for them.

Lets a test drive an emulator that runs as its own process (``python -m
joulie_testbed.emulator``). Bodies and answers are JSON; failures answer
``{"error": ...}`` with 400 (bad arguments) or 404 (unknown object or route).
These requests are never counted, delayed or faulted.

| method        | path                                   | Emulator method            |
|---------------|----------------------------------------|----------------------------|
| GET           | /_emulator/healthz                     |                            |
| POST          | /_emulator/faults                      | inject(**body) -> {"id"}   |
| GET / DELETE  | /_emulator/faults                      | list / clear_faults()      |
| DELETE        | /_emulator/faults/{id}                 | remove one rule            |
| PUT           | /_emulator/latency  {"ms": 20}         | set_latency(ms)            |
| GET / DELETE  | /_emulator/counters                    | counters() / reset_...()   |
| POST          | /_emulator/reset                       | reset()                    |
| POST          | /_emulator/seed  {nodes, pods_per_node, seed, ...} | seed(...)      |
| POST          | /_emulator/load  {"nodes": [], "pods": []}         | load(...)      |
| PUT           | /_emulator/objects  (an object)        | put_object(obj)            |
| GET           | /_emulator/objects/{resource}          | list_objects(?namespace=)  |
| GET / DELETE  | /_emulator/objects/{resource}/{name}   | get_object / delete_object |
| PATCH         | /_emulator/nodes/{name}/labels {"labels": {}} | mutate_node_labels  |
| POST          | /_emulator/writers {node, interval_ms, label_key} | concurrent_writer -> {"id"} |
| DELETE        | /_emulator/writers/{id}                | stop_writer -> {"writes"}  |
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, Unpack

from joulie_testbed.emulator import api, errors, faults
from joulie_testbed.emulator import seed as seeding

Answer = tuple[int, Any]


class Writer(Protocol):
    """A started concurrent writer, known by its id."""

    @property
    def id(self) -> int: ...


class Controlled(Protocol):
    """What the control endpoints drive: ``app.Emulator``'s test controls (a Protocol, so
    this module needs no import of the app that serves it)."""

    @property
    def url(self) -> str: ...
    @property
    def faults(self) -> faults.Faults: ...
    def clear_faults(self) -> None: ...
    def set_latency(self, ms: float) -> None: ...
    def counters(self) -> dict[tuple[str, str], int]: ...
    def reset_counters(self) -> None: ...
    def reset(self) -> None: ...
    def load(self, nodes: Iterable[dict[str, Any]], pods: Iterable[dict[str, Any]]) -> None: ...
    def seed(
        self, nodes: int, pods_per_node: float, *, seed: int, **options: Any
    ) -> seeding.Cluster: ...
    def put_object(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...
    def delete_object(self, resource: str, name: str, namespace: str | None = None) -> bool: ...
    def get_object(
        self, resource: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None: ...
    def list_objects(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]: ...
    def mutate_node_labels(self, name: str, labels: Mapping[str, str | None]) -> dict[str, Any]: ...
    def concurrent_writer(
        self, node: str, *, interval_ms: float = 5, label_key: str = ...
    ) -> Writer: ...
    def stop_writer(self, writer_id: int) -> int: ...


class Controls:
    """Dispatches control requests to an Emulator."""

    def __init__(self, emulator: Controlled) -> None:
        self.emu = emulator

    def handle(self, req: api.Request) -> Answer:
        segs = [s for s in req.path.split("/") if s][1:]
        try:
            body = json.loads(req.body) if req.body else {}
            return self._route(req.method, segs, body, req.query)
        except (KeyError, LookupError) as e:
            return 404, {"error": f"not found: {e}"}
        except (ValueError, TypeError, errors.ApiError) as e:
            return 400, {"error": str(e)}

    def _route(self, method: str, segs: list[str], body: Any, query: Any) -> Answer:
        head, rest = (segs[0] if segs else ""), segs[1:]
        if head in ("faults", "latency", "counters", "healthz"):
            answer = self._traffic(method, head, rest, body)
        elif head in ("objects", "nodes"):
            answer = self._objects(method, head, rest, body, query.get("namespace") or None)
        else:
            answer = self._state(method, head, rest, body)
        if answer is None:
            return 404, {"error": f"no control endpoint {method} /_emulator/{'/'.join(segs)}"}
        return answer

    def _traffic(self, method: str, head: str, rest: list[str], body: Any) -> Answer | None:
        emu = self.emu
        match (method, head, rest):
            case ("GET", "healthz", []):
                return 200, {"ok": True, "url": emu.url}
            case ("POST", "faults", []):
                rule = emu.faults.add(body.pop("method"), body.pop("path_regex"), **body)
                return 201, {"id": rule.id}
            case ("GET", "faults", []):
                return 200, {"faults": emu.faults.rules()}
            case ("DELETE", "faults", []):
                emu.clear_faults()
                return 200, {"ok": True}
            case ("DELETE", "faults", [rule_id]):
                return 200, {"removed": emu.faults.remove(int(rule_id))}
            case ("PUT" | "POST", "latency", []):
                emu.set_latency(float(body["ms"]))
                return 200, {"ok": True}
            case ("GET", "counters", []):
                counts = sorted(emu.counters().items())
                return 200, {
                    "counters": [{"verb": v, "resource": r, "count": c} for (v, r), c in counts]
                }
            case ("DELETE", "counters", []):
                emu.reset_counters()
                return 200, {"ok": True}
        return None

    def _objects(
        self, method: str, head: str, rest: list[str], body: Any, ns: str | None
    ) -> Answer | None:
        emu = self.emu
        match (method, head, rest):
            case ("PUT" | "POST", "objects", []):
                return 200, emu.put_object(body)
            case ("GET", "objects", [resource]):
                return 200, {"items": emu.list_objects(resource, ns)}
            case ("GET", "objects", [resource, name]):
                obj = emu.get_object(resource, name, ns)
                return (
                    (200, obj)
                    if obj is not None
                    else (404, {"error": f"{resource} {name!r} not found"})
                )
            case ("DELETE", "objects", [resource, name]):
                return 200, {"deleted": emu.delete_object(resource, name, ns)}
            case ("PATCH" | "POST", "nodes", [name, "labels"]):
                return 200, emu.mutate_node_labels(name, body["labels"])
        return None

    def _state(self, method: str, head: str, rest: list[str], body: Any) -> Answer | None:
        emu = self.emu
        match (method, head, rest):
            case ("POST", "reset", []):
                emu.reset()
                return 200, {"ok": True}
            case ("POST", "seed", []):
                cluster = emu.seed(
                    body.pop("nodes"), body.pop("pods_per_node"), seed=body.pop("seed"), **body
                )
                return 200, {"nodes": len(cluster.nodes), "pods": len(cluster.pods)}
            case ("POST", "load", []):
                emu.load(body.get("nodes", []), body.get("pods", []))
                return 200, {"ok": True}
            case ("POST", "writers", []):
                writer = emu.concurrent_writer(body.pop("node"), **body)
                return 201, {"id": writer.id}
            case ("DELETE", "writers", [writer_id]):
                return 200, {"writes": emu.stop_writer(int(writer_id))}
        return None


class RemoteEmulator:
    """The Emulator's test controls, driven over HTTP (for an emulator in another process)."""

    def __init__(self, url: str, *, timeout: float = 30) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.url}/_emulator/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            detail = json.loads(e.read() or b"{}").get("error", e.reason)
            if e.code == 404:
                raise KeyError(detail) from e
            raise ValueError(detail) from e

    def inject(self, method: str, path_regex: str, **options: Unpack[faults.FaultOptions]) -> int:
        body = {"method": method, "path_regex": path_regex, **options}
        return int(self._call("POST", "faults", body)["id"])

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def set_latency(self, ms: float) -> None:
        self._call("PUT", "latency", {"ms": ms})

    def counters(self) -> dict[tuple[str, str], int]:
        rows = self._call("GET", "counters")["counters"]
        return {(r["verb"], r["resource"]): int(r["count"]) for r in rows}

    def reset_counters(self) -> None:
        self._call("DELETE", "counters")

    def reset(self) -> None:
        self._call("POST", "reset")

    def seed(
        self, nodes: int, pods_per_node: float, *, seed: int, **options: Any
    ) -> dict[str, int]:
        """Seed remotely; returns the counts (the objects stay on the server)."""
        result: dict[str, int] = self._call(
            "POST",
            "seed",
            {"nodes": nodes, "pods_per_node": pods_per_node, "seed": seed, **options},
        )
        return result

    def load(
        self, nodes: list[dict[str, Any]] | None = None, pods: list[dict[str, Any]] | None = None
    ) -> None:
        self._call("POST", "load", {"nodes": nodes or [], "pods": pods or []})

    def put_object(self, obj: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PUT", "objects", obj)
        return result

    def get_object(
        self, resource: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self._call("GET", f"objects/{resource}/{name}{_ns(namespace)}")
        except KeyError:
            return None
        return result

    def get_node(self, name: str) -> dict[str, Any]:
        node = self.get_object("nodes", name)
        if node is None:
            raise KeyError(name)
        return node

    def delete_object(self, resource: str, name: str, namespace: str | None = None) -> bool:
        return bool(self._call("DELETE", f"objects/{resource}/{name}{_ns(namespace)}")["deleted"])

    def list_objects(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._call("GET", f"objects/{resource}{_ns(namespace)}")[
            "items"
        ]
        return items

    def mutate_node_labels(self, name: str, labels: dict[str, str | None]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PATCH", f"nodes/{name}/labels", {"labels": labels})
        return result

    def start_writer(
        self, node: str, *, interval_ms: float = 5, label_key: str | None = None
    ) -> int:
        """Start a remote concurrent writer; returns its id for ``stop_writer``."""
        body: dict[str, Any] = {"node": node, "interval_ms": interval_ms}
        if label_key is not None:
            body["label_key"] = label_key
        return int(self._call("POST", "writers", body)["id"])

    def stop_writer(self, writer_id: int) -> int:
        return int(self._call("DELETE", f"writers/{writer_id}")["writes"])


def _ns(namespace: str | None) -> str:
    return f"?namespace={namespace}" if namespace else ""
