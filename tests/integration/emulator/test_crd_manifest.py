"""The shipped NodePowerProfile CRD: its shape, its two copies, and its schema's agreement
with what the emulator enforces.

Each sample is judged three ways, which must agree: ``jsonschema`` on the manifest's
openAPIV3Schema, the emulator's validation function, and a dryRun create through the
official client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes import client

from joulie_testbed.emulator import validation
from tests.integration.emulator.builders import NPP

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy" / "crd" / "nodepowerprofiles.yaml"
PACKAGED = REPO / "joulie_tasks" / "manifests" / "nodepowerprofiles.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(DEPLOY.read_text())
    return manifest


@pytest.fixture(scope="module")
def schema(crd: dict[str, Any]) -> dict[str, Any]:
    found = validation.crd_schema(crd, "v1alpha1")
    assert found is not None
    return found


def test_the_two_copies_are_identical() -> None:
    assert DEPLOY.read_bytes() == PACKAGED.read_bytes()


def test_manifest_names_scope_and_columns(crd: dict[str, Any]) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "nodepowerprofiles.joulie.io"
    spec = crd["spec"]
    assert (spec["group"], spec["scope"]) == ("joulie.io", "Cluster")
    assert spec["names"] == {
        "kind": "NodePowerProfile",
        "listKind": "NodePowerProfileList",
        "plural": "nodepowerprofiles",
        "singular": "nodepowerprofile",
        "shortNames": ["npp"],
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Node": ".spec.nodeName",
        "Profile": ".spec.profile",
        "CPU-Watts": ".spec.cpu.packagePowerCapWatts",
        "Age": ".metadata.creationTimestamp",
    }


def test_schema_is_a_valid_json_schema(schema: dict[str, Any]) -> None:
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["required"] == ["spec"]
    assert schema["properties"]["spec"]["required"] == ["nodeName", "profile"]


def _sample(spec: Any, **top: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "joulie.io/v1alpha1",
        "kind": "NodePowerProfile",
        "metadata": {"name": "node-a"},
    }
    if spec is not ...:
        obj["spec"] = spec
    obj.update(top)
    return obj


SAMPLES = [
    ("minimal", _sample({"nodeName": "a", "profile": "eco"}), True),
    (
        "full",
        _sample(
            {
                "nodeName": "a",
                "profile": "performance",
                "cpu": {"packagePowerCapWatts": 5000},
                "policy": {"name": "queue-aware-v1"},
            }
        ),
        True,
    ),
    (
        "cap-1",
        _sample({"nodeName": "a", "profile": "eco", "cpu": {"packagePowerCapWatts": 1}}),
        True,
    ),
    (
        "cap-float",
        _sample({"nodeName": "a", "profile": "eco", "cpu": {"packagePowerCapWatts": 120.5}}),
        True,
    ),
    ("empty-cpu", _sample({"nodeName": "a", "profile": "eco", "cpu": {}}), True),
    (
        "extra-fields",
        _sample({"nodeName": "a", "profile": "eco", "x": 1}, status={"applied": True}),
        True,
    ),
    ("no-spec", _sample(...), False),
    ("spec-null", _sample(None), False),
    ("spec-list", _sample([]), False),
    ("no-nodeName", _sample({"profile": "eco"}), False),
    ("empty-nodeName", _sample({"nodeName": "", "profile": "eco"}), False),
    ("nodeName-int", _sample({"nodeName": 1, "profile": "eco"}), False),
    ("no-profile", _sample({"nodeName": "a"}), False),
    ("bad-profile", _sample({"nodeName": "a", "profile": "turbo"}), False),
    ("profile-case", _sample({"nodeName": "a", "profile": "Eco"}), False),
    (
        "cap-0",
        _sample({"nodeName": "a", "profile": "eco", "cpu": {"packagePowerCapWatts": 0}}),
        False,
    ),
    (
        "cap-negative",
        _sample({"nodeName": "a", "profile": "eco", "cpu": {"packagePowerCapWatts": -5}}),
        False,
    ),
    (
        "cap-0.99",
        _sample({"nodeName": "a", "profile": "eco", "cpu": {"packagePowerCapWatts": 0.99}}),
        False,
    ),
    (
        "cap-string",
        _sample({"nodeName": "a", "profile": "eco", "cpu": {"packagePowerCapWatts": "x"}}),
        False,
    ),
    (
        "cap-bool",
        _sample({"nodeName": "a", "profile": "eco", "cpu": {"packagePowerCapWatts": True}}),
        False,
    ),
    (
        "cap-null",
        _sample({"nodeName": "a", "profile": "eco", "cpu": {"packagePowerCapWatts": None}}),
        False,
    ),
    ("cpu-string", _sample({"nodeName": "a", "profile": "eco", "cpu": "x"}), False),
    ("policy-name-int", _sample({"nodeName": "a", "profile": "eco", "policy": {"name": 1}}), False),
    ("policy-list", _sample({"nodeName": "a", "profile": "eco", "policy": ["x"]}), False),
]


@pytest.mark.parametrize(
    ("sample", "valid"), [(s, v) for _, s, v in SAMPLES], ids=[i for i, _, _ in SAMPLES]
)
def test_jsonschema_emulator_and_api_agree(
    schema: dict[str, Any], custom: client.CustomObjectsApi, sample: dict[str, Any], valid: bool
) -> None:
    by_jsonschema = jsonschema.Draft7Validator(schema).is_valid(sample)
    by_emulator = validation.schema_causes(schema, sample) == []
    try:
        custom.create_cluster_custom_object(*NPP, sample, dry_run="All")
        api_status = 201
    except client.ApiException as e:
        api_status = e.status
    assert (by_jsonschema, by_emulator, api_status) == (valid, valid, 201 if valid else 422)
