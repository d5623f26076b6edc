"""NodePowerProfile admission through the CRD schema, over HTTP.

Covers: every invalid shape of docs/SPEC.md §7 answered 422 with a Status naming the field
paths in ``details.causes``; unknown fields pruned; updates and patches validated
the same way as creates.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.integration.emulator.builders import NPP, npp, status_of


def _without_spec() -> dict[str, Any]:
    body = npp("node-node-00001", "node-00001")
    del body["spec"]
    return body


def _without(field: str) -> dict[str, Any]:
    body = npp("node-node-00001", "node-00001")
    del body["spec"][field]
    return body


INVALID = [
    pytest.param(_without_spec(), ["spec"], id="missing-spec"),
    pytest.param(_without("nodeName"), ["spec.nodeName"], id="missing-nodeName"),
    pytest.param(npp("node-node-00001", ""), ["spec.nodeName"], id="empty-nodeName"),
    pytest.param(npp("node-node-00001", 42), ["spec.nodeName"], id="nodeName-not-string"),  # type: ignore[arg-type]
    pytest.param(_without("profile"), ["spec.profile"], id="missing-profile"),
    pytest.param(npp("node-node-00001", "node-00001", "turbo"), ["spec.profile"], id="bad-profile"),
    pytest.param(
        npp("node-node-00001", "node-00001", watts=0), ["spec.cpu.packagePowerCapWatts"], id="cap-0"
    ),
    pytest.param(
        npp("node-node-00001", "node-00001", watts=0.5),
        ["spec.cpu.packagePowerCapWatts"],
        id="cap-half",
    ),
    pytest.param(
        npp("node-node-00001", "node-00001", watts="x"),
        ["spec.cpu.packagePowerCapWatts"],
        id="cap-string",
    ),
    pytest.param(
        npp("node-node-00001", "node-00001", watts=True),
        ["spec.cpu.packagePowerCapWatts"],
        id="cap-bool",
    ),
    pytest.param(
        npp("node-node-00001", "node-00001", cpu="fast"), ["spec.cpu"], id="cpu-not-object"
    ),
    pytest.param(
        npp("node-node-00001", "node-00001", policy={"name": 3}),
        ["spec.policy.name"],
        id="policy-name-int",
    ),
    pytest.param(
        npp("node-node-00001", "", "turbo", -1),
        ["spec.nodeName", "spec.profile", "spec.cpu.packagePowerCapWatts"],
        id="three-causes",
    ),
]


@pytest.mark.parametrize(("body", "fields"), INVALID)
def test_invalid_profiles_are_rejected_with_field_causes(
    custom: client.CustomObjectsApi, body: dict[str, Any], fields: list[str]
) -> None:
    with pytest.raises(client.ApiException) as err:
        custom.create_cluster_custom_object(*NPP, body)
    assert err.value.status == 422
    status = status_of(err.value)
    assert status["reason"] == "Invalid"
    assert status["details"]["kind"] == "NodePowerProfile"
    assert sorted(c["field"] for c in status["details"]["causes"]) == sorted(fields)
    assert status["message"].startswith('NodePowerProfile.joulie.io "node-node-00001" is invalid: ')


def test_unknown_fields_are_pruned(custom: client.CustomObjectsApi) -> None:
    body = npp("node-node-00001", "node-00001", turbo=True)
    body["extra"] = {"a": 1}
    created = custom.create_cluster_custom_object(*NPP, body)
    assert "turbo" not in created["spec"]
    assert "extra" not in created


def test_updates_and_patches_are_validated_too(custom: client.CustomObjectsApi) -> None:
    created = custom.create_cluster_custom_object(*NPP, npp("node-node-00001", "node-00001"))
    created["spec"]["profile"] = "turbo"
    with pytest.raises(client.ApiException) as err:
        custom.replace_cluster_custom_object(*NPP, "node-node-00001", created)
    assert err.value.status == 422
    with pytest.raises(client.ApiException) as err:
        custom.patch_cluster_custom_object(
            *NPP, "node-node-00001", {"spec": {"cpu": {"packagePowerCapWatts": 0}}}
        )
    assert err.value.status == 422
    stored = custom.get_cluster_custom_object(*NPP, "node-node-00001")
    assert stored["spec"] == npp("node-node-00001", "node-00001")["spec"]


def test_custom_resource_create_needs_kind_and_api_version(custom: client.CustomObjectsApi) -> None:
    body = npp("node-node-00001", "node-00001")
    del body["kind"]
    with pytest.raises(client.ApiException) as err:
        custom.create_cluster_custom_object(*NPP, body)
    assert err.value.status == 400
