"""The cluster port: the resources the operator reads and writes, and the gateways.

Resources are named here, not in the adapter, so the workflow names what it reads
(``cluster.PODS``) without knowing which client serves it. ``KubeGateway`` is what a
tick reads and writes through; ``WatchGateway`` is what the watcher lists and
watches through. ``adapters.kube.ApiGateway`` implements both, ``tests/fakes.py``'s
``FakeKube`` the first. No I/O here.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

#: The API group and version of the operator's own objects (NodePowerProfile, NodeTwin).
NPP_GROUP_VERSION = "joulie.io/v1alpha1"

RequestKey = tuple[str, str, str]  # (verb, resource, outcome)


@dataclass(frozen=True)
class Resource:
    """A REST collection: its URL prefix and plural name (for request counters)."""

    prefix: str
    plural: str
    namespaced: bool = False

    def path(self, name: str | None = None, *, namespace: str | None = None) -> str:
        base = self.prefix
        if self.namespaced and namespace is not None:
            base = f"{base}/namespaces/{namespace}"
        base = f"{base}/{self.plural}"
        return f"{base}/{name}" if name is not None else base


NODES = Resource("/api/v1", "nodes")
PODS = Resource("/api/v1", "pods", namespaced=True)
PROFILES = Resource(f"/apis/{NPP_GROUP_VERSION}", "nodepowerprofiles")
EVENTS = Resource("/api/v1", "events", namespaced=True)
#: NodeTwins (OUTPUT_API nodetwin/both) and their status subresource: the latter is its
#: own RBAC resource and request-counter label; its path is built by patch_twin_status.
TWINS = Resource(f"/apis/{NPP_GROUP_VERSION}", "nodetwins")
TWIN_STATUS = Resource(f"/apis/{NPP_GROUP_VERSION}", "nodetwins/status")
#: NodeHardwares, written by the agent and only read (list, watch) by the operator.
HARDWARE = Resource(f"/apis/{NPP_GROUP_VERSION}", "nodehardwares")

#: The ``outcome`` of a request that got no HTTP answer (else the status code).
NO_ANSWER = "error"
#: Every request (verb, resource) the operator makes and counts in
#: joulie_kube_requests_total; the metrics process exports each at 0 from start-up.
#: Watch streams are left out: only the watcher opens them, and it does not flush its
#: request counts. tests/unit/workflow/test_known_series.py holds this to the source.
COUNTED_REQUESTS: tuple[tuple[str, Resource], ...] = (
    ("list", NODES),
    ("get", NODES),
    ("patch", NODES),
    ("list", PODS),
    ("list", PROFILES),
    ("get", PROFILES),
    ("create", PROFILES),
    ("update", PROFILES),
    ("delete", PROFILES),
    ("create", EVENTS),
    ("list", TWINS),
    ("get", TWINS),
    ("create", TWINS),
    ("update", TWINS),
    ("delete", TWINS),
    ("patch", TWIN_STATUS),
    ("list", HARDWARE),
)


class KubeGateway(Protocol):
    """What a tick reads and writes the cluster through."""

    request_counts: collections.Counter[RequestKey]

    def list_items(self, resource: Resource, *, page_size: int) -> Iterator[dict[str, Any]]: ...

    def list_all(
        self, resource: Resource, *, page_size: int, field_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]: ...

    def get(self, resource: Resource, name: str) -> dict[str, Any] | None: ...

    def patch_node_labels(
        self, name: str, labels: Mapping[str, str], *, dry_run: bool = False
    ) -> dict[str, Any]: ...

    def upsert_profile(
        self, body: Mapping[str, Any], *, exists: bool, dry_run: bool = False
    ) -> None:
        """Create the NodePowerProfile (``exists`` False) or replace it at the body's
        ``metadata.resourceVersion``; a conflict is ``KubeConflict``, a vanished
        object under a replace ``KubeFatal`` with status 404."""
        ...

    def create_event(self, namespace: str, body: Mapping[str, Any]) -> None: ...

    def delete_profile(self, name: str) -> None: ...

    def upsert_twin(self, body: Mapping[str, Any], *, exists: bool, dry_run: bool = False) -> None:
        """Create or replace a NodeTwin's spec, with upsert_profile's error contract."""
        ...

    def patch_twin_status(
        self, name: str, status: Mapping[str, Any], *, dry_run: bool = False
    ) -> None: ...

    def delete_twin(self, name: str) -> None: ...

    def take_request_counts(self) -> collections.Counter[RequestKey]:
        """Return and reset the request counters (flushed to Redis by the tick runner)."""
        ...

    def for_tick(self, tag: str) -> KubeGateway:
        """This gateway for one tick: the same connections and request counters, every
        request named by ``tag`` (the ``X-Joulie-Tick`` header, workflow/runner.py)."""
        ...


class WatchGateway(Protocol):
    """What the watcher lists and watches the cluster through."""

    def list_pages(
        self, resource: Resource, *, page_size: int, field_selector: str | None = None
    ) -> Iterator[tuple[list[dict[str, Any]], str]]:
        """A collection page by page, each with the list's resourceVersion."""
        ...

    def watch_events(
        self, resource: Resource, *, resource_version: str, timeout_s: int
    ) -> Iterator[dict[str, Any]]:
        """Watch events (``type``, ``object``) after ``resource_version``, bookmarks
        included, until the server ends the stream; a 410 is an ``ERROR`` event."""
        ...
