"""Builders for request bodies used across the emulator tests."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client


def status_of(exc: client.ApiException) -> dict[str, Any]:
    """The Status body of a failed call."""
    body: dict[str, Any] = json.loads(exc.body)
    return body


def npp(
    name: str, node: str, profile: str = "eco", watts: Any = 120, **extra: Any
) -> dict[str, Any]:
    """A NodePowerProfile body as the operator would send it."""
    return {
        "apiVersion": "joulie.io/v1alpha1",
        "kind": "NodePowerProfile",
        "metadata": {"name": name, "labels": {"joulie.io/managed-by": "operator"}},
        "spec": {
            "nodeName": node,
            "profile": profile,
            "cpu": {"packagePowerCapWatts": watts},
            "policy": {"name": "static-partition-v1"},
            **extra,
        },
    }


def node(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def pod(
    name: str, namespace: str = "default", node_name: str | None = None, **labels: str
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "pause"}]}
    if node_name:
        spec["nodeName"] = node_name
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": spec}


NPP = ("joulie.io", "v1alpha1", "nodepowerprofiles")
