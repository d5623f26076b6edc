"""Render ``deploy/`` the way ``kubectl kustomize`` does (for the features it uses) and
apply the objects to a real server through the official client.

Supported kustomize features, exactly those ``deploy/`` uses: ``resources`` (files),
``components`` (directories), ``namespace`` (set on namespaced objects, and on the
subjects of a ClusterRoleBinding that name a ServiceAccount), ``labels`` with
``includeSelectors: false`` (metadata labels only) and ``images`` (``newTag``).
A test compares this renderer with ``kubectl kustomize`` where kubectl is installed.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import dynamic

Obj = dict[str, Any]
_CLUSTER_KINDS = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
}


def _read(path: Path) -> list[Obj]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def render(directory: Path, *, components: tuple[str, ...] = ()) -> list[Obj]:
    """The objects ``kubectl kustomize directory`` would print (for deploy/'s features)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    objs: list[Obj] = []
    for res in kustomization.get("resources", []):
        objs.extend(_read(directory / res))
    for comp in [*kustomization.get("components", []), *components]:
        comp_k = yaml.safe_load((directory / comp / "kustomization.yaml").read_text())
        for res in comp_k.get("resources", []):
            objs.extend(_read(directory / comp / res))
    namespace = kustomization.get("namespace")
    pairs: dict[str, str] = {}
    for entry in kustomization.get("labels", []):
        assert entry.get("includeSelectors", False) is False, "only metadata labels supported"
        pairs.update(entry["pairs"])
    tags = {i["name"]: i["newTag"] for i in kustomization.get("images", [])}
    return [_transform(o, namespace=namespace, labels=pairs, tags=tags) for o in objs]


def _transform(
    obj: Obj, *, namespace: str | None, labels: dict[str, str], tags: dict[str, str]
) -> Obj:
    obj = copy.deepcopy(obj)
    meta = obj.setdefault("metadata", {})
    if namespace and obj["kind"] not in _CLUSTER_KINDS:
        meta["namespace"] = namespace
    if namespace and obj["kind"] == "ClusterRoleBinding":
        for subject in obj.get("subjects", []):
            if subject.get("kind") == "ServiceAccount":
                subject["namespace"] = namespace
    if labels:
        meta["labels"] = {**meta.get("labels", {}), **labels}
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    for container in [*spec.get("containers", []), *spec.get("initContainers", [])]:
        image = container.get("image", "")
        if image in tags:
            container["image"] = f"{image}:{tags[image]}"
    return obj


def _send(api: k8s.ApiClient, method: str, path: str, obj: Obj) -> tuple[Any, bytes]:
    """One write with ``fieldValidation=Strict``; the raw response and its body."""
    verb, url, headers, body, _ = api.param_serialize(
        method,
        path,
        query_params=[("fieldValidation", "Strict")],
        header_params={"Accept": "application/json", "Content-Type": "application/json"},
        body=obj,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(verb, url, header_params=headers, body=body)
    return response, response.read()


def apply_all(api: k8s.ApiClient, objs: list[Obj]) -> list[Obj]:
    """Create (or replace, when it exists) every object with ``fieldValidation=Strict``
    (an unknown or duplicate field is an error, not silently pruned), in order,
    refreshing discovery after a CRD; returns the server's answers. Raises
    ``ApiException`` on the first refusal."""
    discovery = dynamic.DynamicClient(api)
    created = []
    for obj in objs:
        resource = discovery.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        namespace = obj["metadata"].get("namespace") if resource.namespaced else None
        path = resource.path(namespace=namespace)
        response, raw = _send(api, "POST", path, obj)
        if response.status == 409:  # exists: replace it at its current version
            current = resource.get(name=obj["metadata"]["name"], namespace=namespace)
            replacement = copy.deepcopy(obj)
            replacement["metadata"]["resourceVersion"] = current.metadata.resourceVersion
            response, raw = _send(api, "PUT", f"{path}/{obj['metadata']['name']}", replacement)
        if not 200 <= response.status < 300:
            raise k8s.ApiException(status=response.status, reason=raw.decode(errors="replace"))
        created.append(yaml.safe_load(raw))
        if obj["kind"] == "CustomResourceDefinition":
            _wait_established(api, obj["metadata"]["name"])
            discovery.resources.invalidate_cache()
    return created


def _wait_established(api: k8s.ApiClient, name: str, *, timeout: float = 30) -> None:
    ext = k8s.ApiextensionsV1Api(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conditions = ext.read_custom_resource_definition(name).status.conditions or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            return
        time.sleep(0.05)
    raise AssertionError(f"CRD {name} not Established after {timeout}s")
