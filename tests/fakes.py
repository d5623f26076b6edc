"""Fakes at our ports, for unit tests of the effectful stage code.

FakeKube implements the KubeGateway protocol in memory. Its limits, on purpose:
no resourceVersion checks unless a test scripts a 409; no selectors, pagination
or validation; objects are plain dicts. Anything claiming Kubernetes semantics is
tested against the HTTP emulator instead (tests/integration).
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Mapping
from typing import Any

from joulie_tasks import errors, kube


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, str]] = []  # (verb, resource, name)
        self.script: dict[tuple[str, str], list[Exception]] = collections.defaultdict(list)
        self.request_counts: collections.Counter[kube.RequestKey] = collections.Counter()

    def fail(self, verb: str, resource: str, *errs: Exception) -> None:
        """The next calls of ``verb`` on ``resource`` raise these errors, in order."""
        self.script[(verb, resource)].extend(errs)

    def _maybe_fail(self, verb: str, resource: str) -> None:
        queue = self.script.get((verb, resource))
        if queue:
            raise queue.pop(0)

    def add(self, resource: str, obj: dict[str, Any]) -> None:
        self.objects[(resource, obj["metadata"]["name"])] = obj

    def list_items(self, resource: kube.Resource, *, page_size: int) -> Iterator[dict[str, Any]]:
        self._maybe_fail("list", resource.plural)
        yield from [o for (r, _), o in self.objects.items() if r == resource.plural]

    def list_all(
        self, resource: kube.Resource, *, page_size: int, field_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        items = list(self.list_items(resource, page_size=page_size))
        if field_selector and field_selector.startswith("spec.nodeName="):
            node = field_selector.split("=", 1)[1]
            items = [o for o in items if (o.get("spec") or {}).get("nodeName") == node]
        return items, "1"

    def list_pages(
        self, resource: kube.Resource, *, page_size: int, field_selector: str | None = None
    ) -> Iterator[tuple[list[dict[str, Any]], str]]:
        items, rv = self.list_all(resource, page_size=page_size, field_selector=field_selector)
        for start in range(0, max(len(items), 1), page_size):
            yield items[start : start + page_size], rv

    def get(self, resource: kube.Resource, name: str) -> dict[str, Any] | None:
        self._maybe_fail("get", resource.plural)
        return self.objects.get((resource.plural, name))

    def patch_node_labels(
        self, name: str, labels: Mapping[str, str], *, dry_run: bool = False
    ) -> dict[str, Any]:
        self._maybe_fail("patch", "nodes")
        node = self.objects.get(("nodes", name))
        if node is None:
            raise errors.KubeFatal(f"node {name} not found", status=404)
        self.writes.append(("patch", "nodes", name))
        node["metadata"].setdefault("labels", {}).update(labels)
        return node

    def create_profile(self, body: Mapping[str, Any], *, dry_run: bool = False) -> None:
        self._maybe_fail("create", "nodepowerprofiles")
        name = body["metadata"]["name"]
        if ("nodepowerprofiles", name) in self.objects:
            raise errors.KubeConflict(f"{name} exists", status=409)
        self.writes.append(("create", "nodepowerprofiles", name))
        self.objects[("nodepowerprofiles", name)] = {
            **body,
            "metadata": {**body["metadata"], "resourceVersion": "1"},
        }

    def replace_profile(self, name: str, body: Mapping[str, Any], *, dry_run: bool = False) -> None:
        self._maybe_fail("update", "nodepowerprofiles")
        current = self.objects.get(("nodepowerprofiles", name))
        if current is None:
            raise errors.KubeFatal(f"{name} not found", status=404)
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise errors.KubeConflict(f"{name} changed", status=409)
        self.writes.append(("update", "nodepowerprofiles", name))
        version = str(int(current["metadata"]["resourceVersion"]) + 1)
        self.objects[("nodepowerprofiles", name)] = {
            **body,
            "metadata": {**body["metadata"], "resourceVersion": version},
        }

    def delete_profile(self, name: str) -> None:
        self._maybe_fail("delete", "nodepowerprofiles")
        if self.objects.pop(("nodepowerprofiles", name), None) is None:
            raise errors.KubeFatal(f"{name} not found", status=404)
        self.writes.append(("delete", "nodepowerprofiles", name))

    def create_event(self, namespace: str, body: Mapping[str, Any]) -> None:
        self._maybe_fail("create", "events")
        self.writes.append(("create", "events", str(body.get("metadata", {}).get("name"))))
