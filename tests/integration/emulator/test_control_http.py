"""The ``/_emulator`` control endpoints, driven through ``RemoteEmulator``.

Covers: faults (add, list, remove, clear), latency, counters, out-of-band object
access and label mutation, concurrent writers, seeding, reset, and error answers
for unknown routes and bad arguments. Control requests are never counted.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from kubernetes import client

from joulie_testbed.emulator import Emulator, RemoteEmulator
from tests.integration.emulator.builders import node


@pytest.fixture
def remote(emulator: Emulator) -> RemoteEmulator:
    return RemoteEmulator(emulator.url)


def test_faults_and_counters_over_http(core: client.CoreV1Api, remote: RemoteEmulator) -> None:
    rule = remote.inject("GET", "^/api/v1/nodes$", status=500, times=2)
    assert isinstance(rule, int)
    for _ in range(2):
        with pytest.raises(client.ApiException) as err:
            core.list_node()
        assert err.value.status == 500
    core.list_node()
    assert remote.counters() == {("list", "nodes"): 3}
    remote.reset_counters()
    assert remote.counters() == {}

    remote.inject("DELETE", "nodes", status=503, times=-1)
    remote.clear_faults()
    core.create_node(node("node-00001"))
    core.delete_node("node-00001")


def test_fault_listing_and_removal(emulator: Emulator, remote: RemoteEmulator) -> None:
    rule = remote.inject("*", "pods", status=500, times=5)
    raw = json.loads(urllib.request.urlopen(f"{emulator.url}/_emulator/faults", timeout=5).read())
    assert raw["faults"][0]["id"] == rule
    assert raw["faults"][0]["times"] == 5
    req = urllib.request.Request(f"{emulator.url}/_emulator/faults/{rule}", method="DELETE")
    assert json.loads(urllib.request.urlopen(req, timeout=5).read()) == {"removed": True}
    assert emulator.faults.rules() == []


def test_latency_over_http(core: client.CoreV1Api, remote: RemoteEmulator) -> None:
    remote.set_latency(150)
    try:
        start = time.monotonic()
        core.list_node()
        assert time.monotonic() - start >= 0.15
    finally:
        remote.set_latency(0)


def test_out_of_band_objects_over_http(core: client.CoreV1Api, remote: RemoteEmulator) -> None:
    stored = remote.put_object(node("node-00001", a="1"))
    assert stored["metadata"]["resourceVersion"]
    remote.put_object(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}}
    )

    mutated = remote.mutate_node_labels("node-00001", {"a": None, "b": "2"})
    assert mutated["metadata"]["labels"] == {"b": "2"}
    assert core.read_node("node-00001").metadata.labels == {"b": "2"}
    assert remote.get_node("node-00001")["metadata"]["labels"] == {"b": "2"}

    assert [p["metadata"]["name"] for p in remote.list_objects("pods", "ns")] == ["p"]
    assert remote.get_object("pods", "p", "ns") is not None
    assert remote.delete_object("pods", "p", "ns") is True
    assert remote.delete_object("pods", "p", "ns") is False
    assert remote.get_object("pods", "p", "ns") is None
    with pytest.raises(KeyError):
        remote.get_node("node-99999")
    with pytest.raises(KeyError):
        remote.mutate_node_labels("node-99999", {"a": "b"})


def test_concurrent_writer_over_http(remote: RemoteEmulator) -> None:
    remote.put_object(node("node-00001"))
    writer = remote.start_writer("node-00001", interval_ms=1, label_key="churn")
    time.sleep(0.05)
    writes = remote.stop_writer(writer)
    assert writes >= 2
    assert remote.get_node("node-00001")["metadata"]["labels"]["churn"] == str(writes - 1)


def test_seed_load_and_reset_over_http(core: client.CoreV1Api, remote: RemoteEmulator) -> None:
    assert remote.seed(30, 4, seed=9, reserved=2) == {"nodes": 30, "pods": 120}
    assert len(core.list_node(label_selector="joulie.io/reserved=true").items) == 2
    remote.load(nodes=[node("node-extra")], pods=[])
    assert len(core.list_node().items) == 31
    remote.reset()
    assert core.list_node().items == []
    assert core.list_pod_for_all_namespaces().items == []


def test_control_errors(emulator: Emulator, remote: RemoteEmulator) -> None:
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{emulator.url}/_emulator/nope", timeout=5)
    assert err.value.code == 404
    err.value.close()
    with pytest.raises(ValueError, match="status"):
        remote.inject("GET", "x", status=200)
    with pytest.raises(ValueError, match="unknown pod shapes"):
        remote.seed(3, 1, seed=1, mix={"nonsense": 1.0})
    health = json.loads(
        urllib.request.urlopen(f"{emulator.url}/_emulator/healthz", timeout=5).read()
    )
    assert health == {"ok": True, "url": emulator.url}
    assert remote.counters() == {}
