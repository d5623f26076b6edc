"""Fault injection, latency and request counters, seen through the official client.

Covers: N injected 409s then success; 429 carrying Retry-After (header and Status
details); 500 and 503; a delay; a dropped connection surfacing as a urllib3 error;
global latency; method and path matching; counters by (verb, resource).
"""

from __future__ import annotations

import time

import pytest
import urllib3
from kubernetes import client

from joulie_testbed.emulator import Emulator
from tests.integration.emulator.builders import NPP, node, npp, pod, status_of


def test_injected_conflicts_then_success(core: client.CoreV1Api, emulator: Emulator) -> None:
    core.create_node(node("node-00001"))
    emulator.inject("PATCH", r"^/api/v1/nodes/node-00001$", status=409, times=3)
    outcomes: list[tuple[int, str | None]] = []
    for _ in range(4):
        try:
            core.patch_node("node-00001", {"metadata": {"labels": {"a": "b"}}})
            outcomes.append((200, None))
        except client.ApiException as e:
            outcomes.append((e.status, status_of(e)["details"]["name"]))
    assert outcomes == [(409, "node-00001")] * 3 + [(200, None)]
    assert emulator.counters()[("patch", "nodes")] == 4


def test_429_carries_retry_after(custom: client.CustomObjectsApi, emulator: Emulator) -> None:
    emulator.inject("POST", "/nodepowerprofiles$", status=429, retry_after=2)
    with pytest.raises(client.ApiException) as err:
        custom.create_cluster_custom_object(*NPP, npp("node-node-00001", "node-00001"))
    assert err.value.status == 429
    assert err.value.headers["Retry-After"] == "2"
    body = status_of(err.value)
    assert body["reason"] == "TooManyRequests"
    assert body["details"]["retryAfterSeconds"] == 2
    custom.create_cluster_custom_object(*NPP, npp("node-node-00001", "node-00001"))


def test_fractional_retry_after_is_rounded_up_and_429_defaults_to_one_second(
    custom: client.CustomObjectsApi, emulator: Emulator
) -> None:
    emulator.inject("POST", "/nodepowerprofiles$", status=429, retry_after=0.05)
    emulator.inject("POST", "/nodepowerprofiles$", status=429)
    for expected in ("1", "1"):
        with pytest.raises(client.ApiException) as err:
            custom.create_cluster_custom_object(*NPP, npp("node-node-00001", "node-00001"))
        assert err.value.headers["Retry-After"] == expected


def test_urllib3_retries_throttled_gets_by_itself(
    core: client.CoreV1Api, emulator: Emulator
) -> None:
    # A fact about the client stack worth knowing: GET + 429 + Retry-After is retried
    # up to 3 times below the official client, so the caller sees a 429 only after 4.
    emulator.inject("GET", "^/api/v1/nodes$", status=429, retry_after=0, times=3)
    assert core.list_node().items == []
    assert emulator.counters()[("list", "nodes")] == 4
    emulator.inject("GET", "^/api/v1/nodes$", status=429, retry_after=0, times=4)
    with pytest.raises(client.ApiException) as err:
        core.list_node()
    assert err.value.status == 429


@pytest.mark.parametrize(("code", "reason"), [(500, "InternalError"), (503, "ServiceUnavailable")])
def test_server_errors(
    custom: client.CustomObjectsApi, emulator: Emulator, code: int, reason: str
) -> None:
    emulator.inject("POST", "nodepowerprofiles", status=code, times=2)
    for _ in range(2):
        with pytest.raises(client.ApiException) as err:
            custom.create_cluster_custom_object(*NPP, npp("node-node-00001", "node-00001"))
        assert err.value.status == code
        assert status_of(err.value)["reason"] == reason
    custom.create_cluster_custom_object(*NPP, npp("node-node-00001", "node-00001"))
    assert [o["metadata"]["name"] for o in emulator.list_objects("npp")] == ["node-node-00001"]


def test_rules_match_method_and_path(core: client.CoreV1Api, emulator: Emulator) -> None:
    core.create_node(node("node-00001"))
    emulator.inject("PATCH", "/nodes/", status=500)
    core.read_node("node-00001")  # GET does not match
    core.list_pod_for_all_namespaces()  # path does not match
    with pytest.raises(client.ApiException):
        core.patch_node("node-00001", {"metadata": {"labels": {"a": "b"}}})


def test_delay_without_status_slows_but_serves(core: client.CoreV1Api, emulator: Emulator) -> None:
    emulator.inject("GET", "/api/v1/nodes", delay_s=0.3)
    start = time.monotonic()
    assert core.list_node().items == []
    assert time.monotonic() - start >= 0.3
    start = time.monotonic()
    core.list_node()
    assert time.monotonic() - start < 0.3


def test_dropped_connection_raises_a_transport_error(
    core: client.CoreV1Api, emulator: Emulator
) -> None:
    core.create_node(node("node-00001"))
    # PATCH is not retried by urllib3: one drop surfaces directly.
    emulator.inject("PATCH", "/api/v1/nodes", drop=True)
    with pytest.raises(urllib3.exceptions.HTTPError):
        core.patch_node("node-00001", {"metadata": {"labels": {"a": "b"}}})
    # GETs are retried by urllib3 (3 times by default): keep dropping until cleared.
    emulator.inject("GET", "/api/v1/nodes", drop=True, times=-1)
    with pytest.raises(urllib3.exceptions.HTTPError):
        core.list_node()
    emulator.clear_faults()
    assert len(core.list_node().items) == 1
    assert emulator.counters()[("list", "nodes")] >= 4 + 1


def test_latency_applies_to_every_request(core: client.CoreV1Api, emulator: Emulator) -> None:
    emulator.set_latency(100)
    try:
        start = time.monotonic()
        core.list_node()
        core.list_pod_for_all_namespaces()
        assert time.monotonic() - start >= 0.2
    finally:
        emulator.set_latency(0)


def test_counters_by_verb_and_resource(
    api_client: client.ApiClient,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    emulator: Emulator,
) -> None:
    core.create_node(node("node-00001"))
    core.list_node()
    core.list_node(limit=1)
    core.read_node("node-00001")
    core.patch_node("node-00001", {"metadata": {"labels": {"a": "b"}}})
    core.replace_node("node-00001", node("node-00001"))
    core.create_namespaced_pod("default", pod("p1"))
    core.patch_namespaced_pod_status("p1", "default", {"status": {"phase": "Running"}})
    core.list_pod_for_all_namespaces()
    core.list_namespaced_pod("default")
    custom.create_cluster_custom_object(*NPP, npp("node-node-00001", "node-00001"))
    custom.list_cluster_custom_object(*NPP)
    client.CoordinationV1Api(api_client).list_namespaced_lease("default")
    core.delete_node("node-00001")
    with pytest.raises(client.ApiException):
        core.read_node("node-00001")  # failures count too

    assert emulator.counters() == {
        ("create", "nodes"): 1,
        ("list", "nodes"): 2,
        ("get", "nodes"): 2,
        ("patch", "nodes"): 1,
        ("update", "nodes"): 1,
        ("delete", "nodes"): 1,
        ("create", "pods"): 1,
        ("patch", "pods/status"): 1,
        ("list", "pods"): 2,
        ("create", "nodepowerprofiles"): 1,
        ("list", "nodepowerprofiles"): 1,
        ("list", "leases"): 1,
    }
    emulator.reset_counters()
    assert emulator.counters() == {}
