"""PATCH content types through the official client.

Covers: JSON merge patch (set and delete labels, keys with ``/``), JSON patch
(add/replace/remove/test/move/copy with ``~1`` escapes; a failed test is 422),
strategic merge on built-ins (the client's default for dict bodies) and its 415
on custom resources, server-side apply (simplified), 404 for a missing object.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from kubernetes import client

from joulie_testbed.emulator import Emulator
from tests.integration.emulator.builders import NPP, node, npp, status_of

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def test_merge_patch_sets_and_removes_labels_with_slashes(core: client.CoreV1Api) -> None:
    core.create_node(
        node("node-00001", **{"joulie.io/managed": "true", "joulie.io/draining": "true"})
    )
    patched = core.patch_node(
        "node-00001",
        {"metadata": {"labels": {"joulie.io/power-profile": "eco", "joulie.io/draining": None}}},
        _content_type=MERGE,
    )
    assert patched.metadata.labels == {
        "joulie.io/managed": "true",
        "joulie.io/power-profile": "eco",
    }


def test_json_patch_on_label_keys_with_escaped_slashes(core: client.CoreV1Api) -> None:
    core.create_node(node("node-00001", **{"joulie.io/managed": "true"}))
    patched = core.patch_node(
        "node-00001",
        [
            {"op": "test", "path": "/metadata/labels/joulie.io~1managed", "value": "true"},
            {"op": "add", "path": "/metadata/labels/joulie.io~1power-profile", "value": "eco"},
            {"op": "add", "path": "/metadata/labels/joulie.io~1draining", "value": "true"},
            {"op": "replace", "path": "/metadata/labels/joulie.io~1draining", "value": "false"},
            {
                "op": "copy",
                "from": "/metadata/labels/joulie.io~1draining",
                "path": "/metadata/labels/c",
            },
            {"op": "move", "from": "/metadata/labels/c", "path": "/metadata/labels/m"},
            {"op": "remove", "path": "/metadata/labels/m"},
        ],
    )
    assert patched.metadata.labels == {
        "joulie.io/managed": "true",
        "joulie.io/power-profile": "eco",
        "joulie.io/draining": "false",
    }


def test_json_patch_test_failure_is_422_and_changes_nothing(
    core: client.CoreV1Api, emulator: Emulator
) -> None:
    core.create_node(node("node-00001", a="1"))
    rv = emulator.get_node("node-00001")["metadata"]["resourceVersion"]
    with pytest.raises(client.ApiException) as err:
        core.patch_node(
            "node-00001",
            [
                {"op": "add", "path": "/metadata/labels/b", "value": "2"},
                {"op": "test", "path": "/metadata/labels/a", "value": "other"},
            ],
        )
    assert err.value.status == 422
    stored = emulator.get_node("node-00001")
    assert stored["metadata"]["labels"] == {"a": "1"}
    assert stored["metadata"]["resourceVersion"] == rv


def test_json_patch_test_of_resource_version_guards_a_write(core: client.CoreV1Api) -> None:
    rv = core.create_node(node("node-00001")).metadata.resource_version
    core.patch_node("node-00001", {"metadata": {"labels": {"x": "1"}}})
    with pytest.raises(client.ApiException) as err:
        core.patch_node(
            "node-00001", [{"op": "test", "path": "/metadata/resourceVersion", "value": rv}]
        )
    assert err.value.status == 422


def test_remove_of_a_missing_label_is_422(core: client.CoreV1Api) -> None:
    core.create_node(node("node-00001"))
    with pytest.raises(client.ApiException) as err:
        core.patch_node("node-00001", [{"op": "remove", "path": "/metadata/labels/nope"}])
    assert err.value.status == 422


def test_strategic_merge_on_nodes_merges_maps(core: client.CoreV1Api) -> None:
    core.create_node(node("node-00001", a="1"))
    # A dict body makes the client send application/strategic-merge-patch+json.
    patched = core.patch_node("node-00001", {"metadata": {"labels": {"b": "2"}}})
    assert patched.metadata.labels == {"a": "1", "b": "2"}


def test_strategic_merge_on_a_custom_resource_is_415(custom: client.CustomObjectsApi) -> None:
    custom.create_cluster_custom_object(*NPP, npp("node-node-00001", "node-00001"))
    with pytest.raises(client.ApiException) as err:
        custom.patch_cluster_custom_object(
            *NPP,
            "node-node-00001",
            {"spec": {"profile": "performance"}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert err.value.status == 415
    assert status_of(err.value)["reason"] == "UnsupportedMediaType"


def test_json_patch_on_a_custom_resource(custom: client.CustomObjectsApi) -> None:
    custom.create_cluster_custom_object(*NPP, npp("node-node-00001", "node-00001"))
    patched = custom.patch_cluster_custom_object(
        *NPP,
        "node-node-00001",
        [{"op": "replace", "path": "/spec/cpu/packagePowerCapWatts", "value": 5000}],
        _content_type=JSON_PATCH,
    )
    assert patched["spec"]["cpu"]["packagePowerCapWatts"] == 5000


def _apply(emulator: Emulator, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        f"{emulator.url}{path}",
        data=json.dumps(body).encode(),
        method="PATCH",
        headers={"Content-Type": "application/apply-patch+yaml"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


def test_server_side_apply_creates_then_merges_and_needs_a_field_manager(
    emulator: Emulator, core: client.CoreV1Api
) -> None:
    # As on kube-apiserver (tests/envtest/test_conformance.py): 201, then 200, 422 without
    # fieldManager. Field ownership and apply conflicts are not emulated.
    applied = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-00001"}}
    applied["metadata"]["labels"] = {"a": "b"}
    code, body = _apply(emulator, "/api/v1/nodes/node-00001", applied)
    assert code == 422
    assert body["details"]["causes"][0]["field"] == "fieldManager"
    code, _ = _apply(emulator, "/api/v1/nodes/node-00001?fieldManager=t", applied)
    assert code == 201
    applied["metadata"]["labels"] = {"a": "b", "c": "d"}
    code, body = _apply(emulator, "/api/v1/nodes/node-00001?fieldManager=t", applied)
    assert code == 200
    assert core.read_node("node-00001").metadata.labels == {"a": "b", "c": "d"}


def test_patch_of_a_missing_object_is_404(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as err:
        core.patch_node("node-99999", {"metadata": {"labels": {"a": "b"}}})
    assert err.value.status == 404
