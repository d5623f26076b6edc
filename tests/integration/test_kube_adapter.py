"""kube.py over real HTTP (official client → emulator): pagination, error mapping,
explicit merge-patch, no hidden urllib3 retries, request counters, dry runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from joulie_tasks import errors
from joulie_tasks.adapters import kube
from joulie_tasks.ports import cluster
from joulie_testbed.emulator import Emulator


@pytest.fixture
def gateway(emulator: Emulator, tmp_path: Path) -> Iterator[kube.ApiGateway]:
    path = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    gw = kube.build_gateway(kubeconfig=str(path), context=None, timeout=2.0, pool_size=4)
    yield gw
    gw.close()


def test_lists_walk_every_page_exactly_once(emulator: Emulator, gateway: kube.ApiGateway) -> None:
    emulator.seed(30, 40, seed=1)
    names = [p["metadata"]["name"] for p in gateway.list_items(cluster.PODS, page_size=100)]
    assert len(names) == len(set(names)) == 1200
    assert emulator.counters()[("list", "pods")] == 12
    assert gateway.request_counts[("list", "pods", "200")] == 12


def test_node_labels_are_merge_patched_leaving_other_labels_alone(
    emulator: Emulator, gateway: kube.ApiGateway
) -> None:
    emulator.seed(1, 0, seed=2)
    name = emulator.list_objects("nodes")[0]["metadata"]["name"]
    gateway.patch_node_labels(name, {"joulie.io/power-profile": "eco"})
    labels = emulator.get_node(name)["metadata"]["labels"]
    assert labels["joulie.io/power-profile"] == "eco"
    assert labels["joulie.io/managed"] == "true"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (409, errors.KubeConflict),
        (429, errors.KubeTransient),
        (500, errors.KubeTransient),
        (503, errors.KubeTransient),
        (403, errors.KubeFatal),
        (422, errors.KubeFatal),
    ],
)
def test_http_errors_map_onto_the_error_tree(
    emulator: Emulator, gateway: kube.ApiGateway, status: int, error: type[Exception]
) -> None:
    emulator.seed(1, 0, seed=3)
    emulator.inject("PATCH", r"^/api/v1/nodes/", status=status, times=1)
    with pytest.raises(error) as info:
        gateway.patch_node_labels("node-00000", {"a": "b"})
    assert isinstance(info.value, errors.KubeError)
    assert info.value.status == status


def test_a_429_on_a_read_surfaces_once_with_its_retry_after_no_hidden_retries(
    emulator: Emulator, gateway: kube.ApiGateway
) -> None:
    emulator.inject("GET", r"^/api/v1/nodes$", status=429, retry_after=3, times=1)
    with pytest.raises(errors.KubeTransient) as info:
        list(gateway.list_items(cluster.NODES, page_size=10))
    assert info.value.retry_after == 3
    assert emulator.counters()[("list", "nodes")] == 1


def test_a_dropped_connection_is_transient_and_not_retried_behind_our_back(
    emulator: Emulator, gateway: kube.ApiGateway
) -> None:
    emulator.inject("GET", r"^/api/v1/nodes$", drop=True, times=1)
    with pytest.raises(errors.KubeUnreachable):
        list(gateway.list_items(cluster.NODES, page_size=10))
    assert list(gateway.list_items(cluster.NODES, page_size=10)) == []


def test_a_response_slower_than_the_timeout_is_a_transient_error(
    emulator: Emulator, gateway: kube.ApiGateway
) -> None:
    emulator.inject("GET", r"^/api/v1/nodes$", delay_s=3.0, times=1)
    with pytest.raises(errors.KubeTransient):
        list(gateway.list_items(cluster.NODES, page_size=10))


def test_get_returns_none_for_a_missing_object(gateway: kube.ApiGateway) -> None:
    assert gateway.get(cluster.NODES, "nope") is None


def test_an_invalid_profile_is_a_fatal_422(gateway: kube.ApiGateway) -> None:
    body = {
        "apiVersion": "joulie.io/v1alpha1",
        "kind": "NodePowerProfile",
        "metadata": {"name": "node-x"},
        "spec": {"nodeName": "x", "profile": "turbo"},
    }
    with pytest.raises(errors.KubeFatal) as info:
        gateway.upsert_profile(body, exists=False)
    assert info.value.status == 422


def test_a_server_dry_run_validates_without_persisting(
    emulator: Emulator, gateway: kube.ApiGateway
) -> None:
    body = {
        "apiVersion": "joulie.io/v1alpha1",
        "kind": "NodePowerProfile",
        "metadata": {"name": "node-x"},
        "spec": {"nodeName": "x", "profile": "eco", "cpu": {"packagePowerCapWatts": 120}},
    }
    gateway.upsert_profile(body, exists=False, dry_run=True)
    # The server saw the create (a dry run is a request, not a local no-op) and kept nothing
    assert emulator.counters()[("create", "nodepowerprofiles")] == 1
    assert gateway.request_counts[("create", "nodepowerprofiles", "201")] == 1
    assert emulator.list_objects("nodepowerprofiles") == []

    # And it validates: an invalid profile is rejected by the dry run, as by a real write
    invalid = {**body, "spec": {**body["spec"], "profile": "turbo"}}
    with pytest.raises(errors.KubeFatal) as info:
        gateway.upsert_profile(invalid, exists=False, dry_run=True)
    assert info.value.status == 422
    assert emulator.counters()[("create", "nodepowerprofiles")] == 2
    assert emulator.list_objects("nodepowerprofiles") == []


def test_an_unreachable_api_server_names_its_url(tmp_path: Path) -> None:
    emu = Emulator().start()
    path = emu.write_kubeconfig(tmp_path / "kubeconfig")
    url = emu.url
    emu.stop()
    gw = kube.build_gateway(kubeconfig=str(path), context=None, timeout=1.0, pool_size=1)
    with pytest.raises(errors.KubeUnreachable) as info:
        list(gw.list_items(cluster.NODES, page_size=10))
    assert url in str(info.value)


def test_one_upsert_creates_then_replaces_at_a_version(
    emulator: Emulator, gateway: kube.ApiGateway
) -> None:
    def body(cap: int, version: str | None = None) -> dict[str, object]:
        metadata: dict[str, object] = {"name": "node-y"}
        if version is not None:
            metadata["resourceVersion"] = version
        return {
            "apiVersion": "joulie.io/v1alpha1",
            "kind": "NodePowerProfile",
            "metadata": metadata,
            "spec": {"nodeName": "y", "profile": "eco", "cpu": {"packagePowerCapWatts": cap}},
        }

    gateway.upsert_profile(body(120), exists=False)
    with pytest.raises(errors.KubeConflict):  # created meanwhile: a conflict
        gateway.upsert_profile(body(120), exists=False)
    current = gateway.get(cluster.PROFILES, "node-y")
    assert current is not None
    version = str(current["metadata"]["resourceVersion"])
    gateway.upsert_profile(body(130, version), exists=True)
    (stored,) = emulator.list_objects("nodepowerprofiles")
    assert stored["spec"]["cpu"]["packagePowerCapWatts"] == 130
    with pytest.raises(errors.KubeConflict):  # the version moved on
        gateway.upsert_profile(body(140, version), exists=True)
    gateway.delete_profile("node-y")
    with pytest.raises(errors.KubeFatal) as gone:
        gateway.upsert_profile(body(140, version), exists=True)
    assert gone.value.status == 404


# --- the hot writes' lean transport (labels, profiles, twins, twin status) ---------------


def _twin(name: str) -> dict[str, object]:
    return {
        "apiVersion": "joulie.io/v1alpha1",
        "kind": "NodeTwin",
        "metadata": {"name": name, "labels": {"joulie.io/managed-by": "operator"}},
        "spec": {"nodeName": name, "profile": "eco"},
    }


def test_hot_writes_carry_the_token_and_the_tick_header_and_are_counted(
    tmp_path: Path,
) -> None:
    # Given an API server that refuses requests without its bearer token
    emu = Emulator(token="s3cret").start()
    try:
        path = emu.write_kubeconfig(tmp_path / "kubeconfig")
        gw = kube.build_gateway(kubeconfig=str(path), context=None, timeout=2.0, pool_size=2)
        emu.seed(1, 0, seed=4)
        node = emu.list_objects("nodes")[0]["metadata"]["name"]
        view = gw.for_tick("7 tick-1")

        # When each hot write is made once through a tick's view
        view.patch_node_labels(node, {"joulie.io/power-profile": "eco"})
        view.upsert_profile(
            {
                "apiVersion": "joulie.io/v1alpha1",
                "kind": "NodePowerProfile",
                "metadata": {"name": node},
                "spec": {"nodeName": node, "profile": "eco"},
            },
            exists=False,
        )
        view.upsert_twin(_twin(node), exists=False)
        view.patch_twin_status(node, {"lastUpdated": "2026-12-03T08:00:00Z"})

        # Then each was authorised, named its tick and was counted by verb and status
        writes = [r for r in emu.request_log() if r.method != "GET"]
        assert [(r.method, r.tick) for r in writes] == [
            ("PATCH", "7 tick-1"),
            ("POST", "7 tick-1"),
            ("POST", "7 tick-1"),
            ("PATCH", "7 tick-1"),
        ]
        assert emu.get_node(node)["metadata"]["labels"]["joulie.io/power-profile"] == "eco"
        (twin,) = emu.list_objects("nodetwins")
        assert twin["status"]["lastUpdated"] == "2026-12-03T08:00:00Z"
        assert gw.take_request_counts() == {
            ("patch", "nodes", "200"): 1,
            ("create", "nodepowerprofiles", "201"): 1,
            ("create", "nodetwins", "201"): 1,
            ("patch", "nodetwins/status", "200"): 1,
        }
        gw.close()
    finally:
        emu.stop()


def test_a_dropped_write_is_unreachable_and_not_retried_behind_our_back(
    emulator: Emulator, gateway: kube.ApiGateway
) -> None:
    emulator.seed(1, 0, seed=5)
    emulator.inject("PATCH", r"^/api/v1/nodes/", drop=True, times=1)
    with pytest.raises(errors.KubeUnreachable):
        gateway.patch_node_labels("node-00000", {"a": "b"})
    assert emulator.counters()[("patch", "nodes")] == 1
    assert gateway.request_counts[("patch", "nodes", cluster.NO_ANSWER)] == 1
    gateway.patch_node_labels("node-00000", {"a": "b"})  # the pool recovers


def test_a_write_slower_than_the_timeout_is_a_transient_error(
    emulator: Emulator, gateway: kube.ApiGateway
) -> None:
    emulator.seed(1, 0, seed=6)
    emulator.inject("PATCH", r"^/api/v1/nodes/", delay_s=3.0, times=1)
    with pytest.raises(errors.KubeTransient):
        gateway.patch_node_labels("node-00000", {"a": "b"})


def test_hot_writes_keep_a_path_in_the_server_url(emulator: Emulator, tmp_path: Path) -> None:
    # Given a server URL with a path (an API server behind a gateway), here one the
    # emulator does not serve, so both requests are answered 404 and logged as sent
    path = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    config = json.loads(json.dumps(yaml.safe_load(path.read_text())))
    config["clusters"][0]["cluster"]["server"] = emulator.url + "/k8s/clusters/c-1/"
    path.write_text(json.dumps(config))
    gw = kube.build_gateway(kubeconfig=str(path), context=None, timeout=2.0, pool_size=2)

    # When a read (the official client) and a hot write (the lean transport) are made
    assert gw.get(cluster.NODES, "n1") is None
    with pytest.raises(errors.KubeFatal):
        gw.patch_node_labels("n1", {"a": "b"})
    gw.close()

    # Then both went to the same prefixed path
    assert [r.path for r in emulator.request_log()] == [
        "/k8s/clusters/c-1/api/v1/nodes/n1",
        "/k8s/clusters/c-1/api/v1/nodes/n1",
    ]
