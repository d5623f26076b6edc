"""The kinds the emulator serves, and the discovery documents that describe them.

One ``Resource`` per served REST resource. Custom resources (``custom=True``) are
only served while their CustomResourceDefinition exists in the store, as on a real
cluster. Field-selector labels follow the real API server: anything else is a 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_META_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


@dataclass(frozen=True)
class Resource:
    """One REST resource: where it lives, what it is called and what it allows."""

    plural: str
    singular: str
    kind: str
    group: str
    version: str
    namespaced: bool
    custom: bool = False
    short_names: tuple[str, ...] = ()
    field_labels: frozenset[str] = _META_FIELDS
    status_subresource: bool = False
    #: Store table shared with another resource (events.k8s.io events live with core ones).
    storage: str = ""
    #: Field labels that read another path of the stored object (label -> stored path).
    field_paths: tuple[tuple[str, str], ...] = ()

    @property
    def api_version(self) -> str:
        return self.version if not self.group else f"{self.group}/{self.version}"

    @property
    def key(self) -> str:
        """Store key: the plural, qualified by group for non-core groups."""
        return self.plural if not self.group else f"{self.plural}.{self.group}"

    @property
    def storage_key(self) -> str:
        return self.storage or self.key

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"

    @property
    def qualified(self) -> str:
        """``pods`` or ``nodepowerprofiles.joulie.io``, as in real Status messages."""
        return self.key

    @property
    def qualified_kind(self) -> str:
        return self.kind if not self.group else f"{self.kind}.{self.group}"


NODES = Resource(
    "nodes",
    "node",
    "Node",
    "",
    "v1",
    namespaced=False,
    short_names=("no",),
    field_labels=_META_FIELDS | {"spec.unschedulable"},
    status_subresource=True,
)
PODS = Resource(
    "pods",
    "pod",
    "Pod",
    "",
    "v1",
    namespaced=True,
    short_names=("po",),
    field_labels=_META_FIELDS
    | {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    },
    status_subresource=True,
)
EVENTS = Resource(
    "events",
    "event",
    "Event",
    "",
    "v1",
    namespaced=True,
    short_names=("ev",),
    field_labels=_META_FIELDS
    | {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "reason",
        "reportingComponent",
        "type",
    },
)
# Stored with core events, in core form; api.py converts (as the real server does).
EVENTS_V1 = Resource(
    "events",
    "event",
    "Event",
    "events.k8s.io",
    "v1",
    namespaced=True,
    storage=EVENTS.key,
    field_labels=_META_FIELDS
    | {
        "reason",
        "type",
        "reportingController",
        *(f"regarding.{f}" for f in ("kind", "namespace", "name", "uid", "apiVersion")),
    },
    field_paths=(
        ("reportingController", "reportingComponent"),
        *(
            (f"regarding.{f}", f"involvedObject.{f}")
            for f in ("kind", "namespace", "name", "uid", "apiVersion")
        ),
    ),
)
LEASES = Resource("leases", "lease", "Lease", "coordination.k8s.io", "v1", namespaced=True)
CRDS = Resource(
    "customresourcedefinitions",
    "customresourcedefinition",
    "CustomResourceDefinition",
    "apiextensions.k8s.io",
    "v1",
    namespaced=False,
    short_names=("crd", "crds"),
)
NODE_POWER_PROFILES = Resource(
    "nodepowerprofiles",
    "nodepowerprofile",
    "NodePowerProfile",
    "joulie.io",
    "v1alpha1",
    namespaced=False,
    custom=True,
    short_names=("npp",),
)

NODE_TWINS = Resource(
    "nodetwins",
    "nodetwin",
    "NodeTwin",
    "joulie.io",
    "v1alpha1",
    namespaced=False,
    custom=True,
    short_names=("nt",),
    status_subresource=True,
)

NODE_HARDWARES = Resource(
    "nodehardwares",
    "nodehardware",
    "NodeHardware",
    "joulie.io",
    "v1alpha1",
    namespaced=False,
    custom=True,
    short_names=("nhw",),
    status_subresource=True,
)

ALL: tuple[Resource, ...] = (
    NODES,
    PODS,
    EVENTS,
    EVENTS_V1,
    LEASES,
    CRDS,
    NODE_POWER_PROFILES,
    NODE_TWINS,
    NODE_HARDWARES,
)
_BY_PATH = {(r.group, r.version, r.plural): r for r in ALL}
_BY_KIND = {(r.api_version, r.kind): r for r in ALL}


def by_path(group: str, version: str, plural: str) -> Resource | None:
    return _BY_PATH.get((group, version, plural))


def by_kind(api_version: str, kind: str) -> Resource | None:
    return _BY_KIND.get((api_version, kind))


def resolve(name: str) -> Resource:
    """Find a resource by plural, singular, kind, short name or store key.

    ``events`` means core events; ``events.events.k8s.io`` the events.k8s.io ones.
    Raises KeyError for anything else.
    """
    wanted = name.lower()
    for res in ALL:
        names = {res.key, res.plural, res.singular, res.kind.lower(), *res.short_names}
        if wanted in names:
            return res
    raise KeyError(f"unknown resource {name!r}")


# --- discovery --------------------------------------------------------------------------

_VERBS = ["create", "delete", "get", "list", "patch", "update"]
GROUP_VERSIONS: tuple[tuple[str, str], ...] = (
    ("coordination.k8s.io", "v1"),
    ("apiextensions.k8s.io", "v1"),
    ("events.k8s.io", "v1"),
    ("joulie.io", "v1alpha1"),
)


def resource_list(group: str, version: str, *, served: set[str]) -> dict[str, Any] | None:
    """The APIResourceList of one group version, or None when nothing is served there."""
    items: list[dict[str, Any]] = []
    for res in ALL:
        if (res.group, res.version) != (group, version) or res.key not in served:
            continue
        entry = {
            "name": res.plural,
            "singularName": res.singular,
            "namespaced": res.namespaced,
            "kind": res.kind,
            "verbs": _VERBS,
        }
        if res.short_names:
            entry["shortNames"] = list(res.short_names)
        items.append(entry)
        if res.status_subresource:
            sub = {"name": f"{res.plural}/status", "singularName": "", "kind": res.kind}
            items.append({**sub, "namespaced": res.namespaced, "verbs": ["get", "patch", "update"]})
    if not items:
        return None
    gv = version if not group else f"{group}/{version}"
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": items}


def api_group(group: str, version: str) -> dict[str, Any]:
    gv = {"groupVersion": f"{group}/{version}", "version": version}
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": [gv],
        "preferredVersion": gv,
    }


def group_list(*, served: set[str]) -> dict[str, Any]:
    groups = [
        api_group(g, v) for g, v in GROUP_VERSIONS if resource_list(g, v, served=served) is not None
    ]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


VERSION_INFO: dict[str, Any] = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-joulie-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}
