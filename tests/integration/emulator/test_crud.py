"""CRUD of every served kind through the official client, plus resourceVersion bookkeeping.

Covers: nodes, pods (+ status subresource), core and events.k8s.io events, leases,
CRDs, NodePowerProfiles; uid/creationTimestamp/resourceVersion stamping; 404 and
AlreadyExists Status bodies; name and label admission; dryRun=All; discovery.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client, config

from joulie_testbed.emulator import Emulator
from tests.integration.emulator.builders import NPP, node, npp, pod, status_of


def test_node_lifecycle_stamps_metadata_and_bumps_resource_version(core: client.CoreV1Api) -> None:
    created = core.create_node(node("node-00001", role="worker"))
    assert created.metadata.uid
    assert created.metadata.creation_timestamp is not None
    rv1 = int(created.metadata.resource_version)

    got = core.read_node("node-00001")
    assert got.metadata.resource_version == str(rv1)

    got.metadata.labels["extra"] = "1"
    replaced = core.replace_node("node-00001", got)
    assert int(replaced.metadata.resource_version) > rv1
    assert replaced.metadata.uid == created.metadata.uid

    patched = core.patch_node("node-00001", {"metadata": {"labels": {"extra": "2"}}})
    assert patched.metadata.labels == {"role": "worker", "extra": "2"}
    assert int(patched.metadata.resource_version) > int(replaced.metadata.resource_version)

    listed = core.list_node()
    assert [n.metadata.name for n in listed.items] == ["node-00001"]
    assert int(listed.metadata.resource_version) >= int(patched.metadata.resource_version)

    core.delete_node("node-00001")
    with pytest.raises(client.ApiException) as err:
        core.read_node("node-00001")
    assert err.value.status == 404
    body = status_of(err.value)
    assert body["kind"] == "Status"
    assert body["reason"] == "NotFound"
    assert body["details"] == {"name": "node-00001", "kind": "nodes"}


def test_create_of_an_existing_name_is_already_exists(core: client.CoreV1Api) -> None:
    core.create_node(node("node-00001"))
    with pytest.raises(client.ApiException) as err:
        core.create_node(node("node-00001"))
    assert err.value.status == 409
    assert status_of(err.value)["reason"] == "AlreadyExists"


def test_pod_crud_and_status_subresource(core: client.CoreV1Api) -> None:
    created = core.create_namespaced_pod("team-a", pod("web-1", "team-a", "node-00001", app="web"))
    assert created.status.phase == "Pending"  # server default

    # The main resource ignores status, like the real server.
    created.status.phase = "Running"
    updated = core.replace_namespaced_pod("web-1", "team-a", created)
    assert updated.status.phase == "Pending"

    running = core.patch_namespaced_pod_status("web-1", "team-a", {"status": {"phase": "Running"}})
    assert running.status.phase == "Running"
    running.status.phase = "Succeeded"
    done = core.replace_namespaced_pod_status("web-1", "team-a", running)
    assert done.status.phase == "Succeeded"
    assert core.read_namespaced_pod("web-1", "team-a").status.phase == "Succeeded"

    assert [p.metadata.name for p in core.list_namespaced_pod("team-a").items] == ["web-1"]
    assert core.list_namespaced_pod("team-b").items == []
    core.delete_namespaced_pod("web-1", "team-a")
    assert core.list_pod_for_all_namespaces().items == []


def test_namespace_in_body_must_match_the_url(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_pod("team-a", pod("web-1", "team-b"))
    assert err.value.status == 400


def test_core_and_events_v1_events_are_created_and_listed(api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_event(
        "default",
        {
            "metadata": {"generateName": "tick-"},
            "involvedObject": {"kind": "Node", "name": "node-00001"},
            "reason": "ProfileChanged",
            "message": "eco -> performance",
            "type": "Normal",
        },
    )
    events = core.list_namespaced_event("default", field_selector="reason=ProfileChanged")
    assert len(events.items) == 1
    assert events.items[0].metadata.name.startswith("tick-")

    ev1 = client.EventsV1Api(api_client)
    ev1.create_namespaced_event(
        "default",
        {
            "metadata": {"name": "tick-x"},
            "eventTime": "2024-01-01T00:00:00.000000Z",
            "reportingController": "joulie.io/operator",
            "reportingInstance": "w1",
            "action": "Reconcile",
            "reason": "Deferred",
            "type": "Normal",
        },
    )
    # One storage for both APIs, as on the real server: each lists both events. (Read
    # through the core API: the client's EventsV1Event model rejects a legacy event's
    # null eventTime, from the real server too.)
    listed = core.list_namespaced_event("default").items
    assert sorted(e.reason for e in listed) == ["Deferred", "ProfileChanged"]
    assert ev1.read_namespaced_event("tick-x", "default").reporting_controller == (
        "joulie.io/operator"
    )
    assert core.read_namespaced_event("tick-x", "default").reporting_component == (
        "joulie.io/operator"
    )


def test_lease_crud(api_client: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(api_client)
    body = {
        "metadata": {"name": "joulie-leader"},
        "spec": {"holderIdentity": "w1", "leaseDurationSeconds": 15},
    }
    created = leases.create_namespaced_lease("kube-system", body)
    created.spec.holder_identity = "w2"
    replaced = leases.replace_namespaced_lease("joulie-leader", "kube-system", created)
    assert replaced.spec.holder_identity == "w2"
    # A second writer still holding the old version loses.
    with pytest.raises(client.ApiException) as err:
        leases.replace_namespaced_lease("joulie-leader", "kube-system", created)
    assert err.value.status == 409
    leases.delete_namespaced_lease("joulie-leader", "kube-system")
    assert leases.list_namespaced_lease("kube-system").items == []


def test_crd_crud_and_npp_served_only_while_its_crd_exists(
    api_client: client.ApiClient, custom: client.CustomObjectsApi
) -> None:
    ext = client.ApiextensionsV1Api(api_client)
    crd = ext.read_custom_resource_definition("nodepowerprofiles.joulie.io")
    assert crd.spec.names.short_names == ["npp"]
    assert any(c.type == "Established" and c.status == "True" for c in crd.status.conditions)
    assert [c.metadata.name for c in ext.list_custom_resource_definition().items] == [
        "nodehardwares.joulie.io",
        "nodepowerprofiles.joulie.io",
        "nodetwins.joulie.io",
    ]

    ext.delete_custom_resource_definition("nodepowerprofiles.joulie.io")
    with pytest.raises(client.ApiException) as err:
        custom.list_cluster_custom_object(*NPP)
    assert err.value.status == 404

    crd.metadata.resource_version = None
    crd.status = None
    ext.create_custom_resource_definition(crd)
    assert custom.list_cluster_custom_object(*NPP)["items"] == []


def test_npp_crud_and_list_by_label(custom: client.CustomObjectsApi) -> None:
    created = custom.create_cluster_custom_object(*NPP, npp("node-node-00001", "node-00001"))
    assert created["metadata"]["generation"] == 1
    custom.create_cluster_custom_object(
        *NPP, npp("node-node-00002", "node-00002", "performance", 5000)
    )

    got = custom.get_cluster_custom_object(*NPP, "node-node-00001")
    assert got["spec"]["cpu"]["packagePowerCapWatts"] == 120

    got["spec"]["profile"] = "performance"
    replaced = custom.replace_cluster_custom_object(*NPP, "node-node-00001", got)
    assert replaced["spec"]["profile"] == "performance"
    assert replaced["metadata"]["generation"] == 2

    patched = custom.patch_cluster_custom_object(
        *NPP, "node-node-00001", {"spec": {"profile": "eco"}}
    )
    assert patched["spec"]["profile"] == "eco"

    listed = custom.list_cluster_custom_object(*NPP, label_selector="joulie.io/managed-by=operator")
    assert listed["kind"] == "NodePowerProfileList"
    assert [o["metadata"]["name"] for o in listed["items"]] == [
        "node-node-00001",
        "node-node-00002",
    ]

    custom.delete_cluster_custom_object(*NPP, "node-node-00002")
    assert len(custom.list_cluster_custom_object(*NPP)["items"]) == 1


def test_resource_versions_are_one_global_increasing_counter(
    core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    rvs = [
        int(core.create_node(node("node-00001")).metadata.resource_version),
        int(
            custom.create_cluster_custom_object(*NPP, npp("node-node-00001", "node-00001"))[
                "metadata"
            ]["resourceVersion"]
        ),
        int(core.create_namespaced_pod("default", pod("p1")).metadata.resource_version),
        int(
            core.patch_node(
                "node-00001", {"metadata": {"labels": {"a": "b"}}}
            ).metadata.resource_version
        ),
    ]
    assert rvs == sorted(rvs)
    assert len(set(rvs)) == len(rvs)
    assert int(core.list_pod_for_all_namespaces().metadata.resource_version) >= rvs[-1]


@pytest.mark.parametrize(
    "name",
    ["Node-1", "node_1", "-node", "n" * 254, ""],
    ids=["upper", "underscore", "dash-first", "too-long", "empty"],
)
def test_names_must_be_dns_subdomains(core: client.CoreV1Api, name: str) -> None:
    with pytest.raises(client.ApiException) as err:
        core.create_node(node(name))
    assert err.value.status == 422
    assert status_of(err.value)["details"]["causes"][0]["field"] == "metadata.name"


def test_label_values_must_be_strings_and_valid(core: client.CoreV1Api) -> None:
    core.create_node(node("node-00001"))
    with pytest.raises(client.ApiException) as err:
        core.patch_node("node-00001", {"metadata": {"labels": {"joulie.io/draining": True}}})
    assert err.value.status == 422  # the patched object does not decode (as kube-apiserver)
    with pytest.raises(client.ApiException) as err:
        core.patch_node(
            "node-00001", {"metadata": {"labels": {"joulie.io/draining": "not valid!"}}}
        )
    assert err.value.status == 422


def test_dry_run_validates_but_does_not_persist(
    core: client.CoreV1Api, custom: client.CustomObjectsApi, emulator: Emulator
) -> None:
    custom.create_cluster_custom_object(*NPP, npp("node-node-00001", "node-00001"), dry_run="All")
    assert emulator.list_objects("nodepowerprofiles") == []
    with pytest.raises(client.ApiException) as err:
        custom.create_cluster_custom_object(*NPP, npp("x", "node-00001", "turbo"), dry_run="All")
    assert err.value.status == 422

    core.create_node(node("node-00001", a="1"))
    rv = emulator.get_node("node-00001")["metadata"]["resourceVersion"]
    result = core.patch_node("node-00001", {"metadata": {"labels": {"a": "2"}}}, dry_run="All")
    assert result.metadata.labels["a"] == "2"
    core.delete_node("node-00001", dry_run="All")
    stored = emulator.get_node("node-00001")
    assert stored["metadata"]["labels"]["a"] == "1"
    assert stored["metadata"]["resourceVersion"] == rv


def test_discovery_documents(api_client: client.ApiClient) -> None:
    assert client.VersionApi(api_client).get_code().major == "1"
    groups = {g.name for g in client.ApisApi(api_client).get_api_versions().groups}
    assert {"joulie.io", "coordination.k8s.io", "apiextensions.k8s.io", "events.k8s.io"} <= groups
    resources = client.CoreV1Api(api_client).get_api_resources().resources
    assert {"nodes", "pods", "pods/status", "events"} <= {r.name for r in resources}
    npp_list = client.CustomObjectsApi(api_client).get_api_resources("joulie.io", "v1alpha1")
    assert [(r.name, r.namespaced) for r in npp_list.resources] == [
        ("nodepowerprofiles", False),
        ("nodetwins", False),
        ("nodetwins/status", False),
        ("nodehardwares", False),
        ("nodehardwares/status", False),
    ]


def test_a_custom_resource_with_the_status_subresource_drops_status_on_create(
    custom: client.CustomObjectsApi,
) -> None:
    """As a real server does (the agent creates its NodeHardware, then writes status)."""
    hardware = ("joulie.io", "v1alpha1", "nodehardwares")
    body = {
        "apiVersion": "joulie.io/v1alpha1",
        "kind": "NodeHardware",
        "metadata": {"name": "n1"},
        "spec": {"nodeName": "n1"},
        "status": {"cpu": {"sockets": 2}},
    }
    created = custom.create_cluster_custom_object(*hardware, body)
    assert "status" not in created
    patched = custom.patch_cluster_custom_object_status(
        *hardware, "n1", {"status": {"cpu": {"sockets": 2}}}
    )
    assert patched["status"] == {"cpu": {"sockets": 2}}


def test_bearer_token_is_required_when_configured(tmp_path: Path) -> None:
    with Emulator(token="s3cret") as emu:
        cfg = client.Configuration()
        config.load_kube_config(
            config_file=str(emu.write_kubeconfig(tmp_path / "kc")), client_configuration=cfg
        )
        with client.ApiClient(cfg) as api:
            assert client.CoreV1Api(api).list_node().items == []
        cfg.api_key = {}
        with client.ApiClient(cfg) as api, pytest.raises(client.ApiException) as err:
            client.CoreV1Api(api).list_node()
        assert err.value.status == 401
