"""Optimistic concurrency: stale resourceVersions, unconditional updates, preconditions.

Covers: 409 Conflict Status on stale PUT and on a stale version in a merge patch;
422 for a custom-resource PUT without resourceVersion (built-ins update
unconditionally); delete preconditions; a background writer making a
read-modify-write loop meet conflicts.
"""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from joulie_testbed.emulator import Emulator
from tests.integration.emulator.builders import NPP, node, npp, status_of


def test_stale_put_is_a_409_with_a_conflict_status(core: client.CoreV1Api) -> None:
    stale = core.create_node(node("node-00001"))
    core.patch_node("node-00001", {"metadata": {"labels": {"x": "1"}}})

    with pytest.raises(client.ApiException) as err:
        core.replace_node("node-00001", stale)
    assert err.value.status == 409
    body = status_of(err.value)
    assert body["status"] == "Failure"
    assert body["reason"] == "Conflict"
    assert body["code"] == 409
    assert body["details"] == {"name": "node-00001", "kind": "nodes"}
    assert "the object has been modified" in body["message"]


def test_merge_patch_carrying_a_stale_resource_version_is_a_409(core: client.CoreV1Api) -> None:
    rv = core.create_node(node("node-00001")).metadata.resource_version
    core.patch_node("node-00001", {"metadata": {"labels": {"x": "1"}}})
    with pytest.raises(client.ApiException) as err:
        core.patch_node("node-00001", {"metadata": {"resourceVersion": rv, "labels": {"x": "2"}}})
    assert err.value.status == 409


def test_merge_patch_carrying_the_current_resource_version_applies(core: client.CoreV1Api) -> None:
    rv = core.create_node(node("node-00001")).metadata.resource_version
    patched = core.patch_node(
        "node-00001", {"metadata": {"resourceVersion": rv, "labels": {"x": "2"}}}
    )
    assert patched.metadata.labels == {"x": "2"}


def test_custom_resource_put_without_resource_version_is_invalid(
    custom: client.CustomObjectsApi,
) -> None:
    custom.create_cluster_custom_object(*NPP, npp("node-node-00001", "node-00001"))
    with pytest.raises(client.ApiException) as err:
        custom.replace_cluster_custom_object(
            *NPP, "node-node-00001", npp("node-node-00001", "node-00001")
        )
    assert err.value.status == 422
    body = status_of(err.value)
    assert body["reason"] == "Invalid"
    assert (
        "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
        in body["message"]
    )


def test_custom_resource_put_with_stale_resource_version_is_a_409(
    custom: client.CustomObjectsApi,
) -> None:
    created = custom.create_cluster_custom_object(*NPP, npp("node-node-00001", "node-00001"))
    custom.patch_cluster_custom_object(
        *NPP, "node-node-00001", {"spec": {"profile": "performance"}}
    )
    with pytest.raises(client.ApiException) as err:
        custom.replace_cluster_custom_object(*NPP, "node-node-00001", created)
    assert err.value.status == 409
    assert status_of(err.value)["details"]["group"] == "joulie.io"


def test_builtin_put_without_resource_version_is_unconditional(core: client.CoreV1Api) -> None:
    core.create_node(node("node-00001", a="1"))
    core.patch_node("node-00001", {"metadata": {"labels": {"a": "2"}}})
    replaced = core.replace_node("node-00001", node("node-00001", a="3"))
    assert replaced.metadata.labels == {"a": "3"}


def test_delete_preconditions_are_enforced(core: client.CoreV1Api) -> None:
    created = core.create_node(node("node-00001"))
    core.patch_node("node-00001", {"metadata": {"labels": {"a": "2"}}})
    with pytest.raises(client.ApiException) as err:
        core.delete_node(
            "node-00001",
            body=client.V1DeleteOptions(
                preconditions=client.V1Preconditions(
                    resource_version=created.metadata.resource_version
                )
            ),
        )
    assert err.value.status == 409
    core.delete_node(
        "node-00001",
        body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=created.metadata.uid)),
    )


def test_a_concurrent_writer_makes_read_modify_write_conflict(
    core: client.CoreV1Api, emulator: Emulator
) -> None:
    # Given a node whose labels another writer rewrites every millisecond
    core.create_node(node("node-00001"))
    statuses = []
    with emulator.concurrent_writer("node-00001", interval_ms=1) as writer:
        # When we read-modify-write it with a deliberate pause between read and write
        for _ in range(5):
            current = core.read_node("node-00001")
            time.sleep(0.01)
            current.metadata.labels["joulie.io/power-profile"] = "eco"
            try:
                core.replace_node("node-00001", current)
                statuses.append(200)
            except client.ApiException as e:
                statuses.append(e.status)
    # Then every attempt lost the race, and the writer's label kept changing
    assert statuses == [409] * 5
    assert writer.writes >= 5
    assert "joulie.io/power-profile" not in emulator.get_node("node-00001")["metadata"]["labels"]
