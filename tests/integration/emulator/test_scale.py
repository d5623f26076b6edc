"""A 10,000-node / 100,000-pod cluster listed completely through the official client.

Responses are read raw (``_preload_content=False`` + ``json.loads``) as a snapshot
of that size should be: deserialising 100k pods into client models costs far
more than the transfer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from joulie_testbed.emulator import Emulator, seed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def big(emulator: Emulator) -> Emulator:
    cluster = seed.generate_cluster(10_000, 10, seed=42, reserved=100, unschedulable=50)
    emulator.load(cluster.nodes, cluster.pods)
    return emulator


@pytest.fixture(autouse=True)
def fresh() -> None:
    """Keep the seeded cluster across this module's tests (overrides the reset)."""


def _walk(call: Callable[..., Any], limit: int) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    token, pages = None, 0
    while True:
        resp = call(limit=limit, _continue=token, _preload_content=False)
        page = json.loads(resp.data)
        resp.release_conn()
        items += page["items"]
        pages += 1
        token = page["metadata"].get("continue")
        if not token:
            return items, pages


def test_100k_pods_and_10k_nodes_list_completely(big: Emulator, core: client.CoreV1Api) -> None:
    start = time.monotonic()
    pods, pages = _walk(core.list_pod_for_all_namespaces, 500)
    elapsed = time.monotonic() - start
    assert pages == 200
    keys = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods}
    assert len(keys) == len(pods) == 100_000
    assert elapsed < 20, f"listing 100k pods took {elapsed:.1f}s"

    nodes, pages = _walk(core.list_node, 500)
    assert len(nodes) == 10_000
    assert pages == 20
    assert sum(1 for n in nodes if n["spec"].get("unschedulable")) == 50
    assert [n["metadata"]["name"] for n in nodes] == sorted(n["metadata"]["name"] for n in nodes)


def test_one_page_costs_little_server_time(big: Emulator) -> None:
    from joulie_testbed.emulator import api

    req = api.Request("GET", "/api/v1/pods", {"limit": "500"}, {}, b"")
    route = api.parse_route("GET", "/api/v1/pods", {"limit": "500"})
    assert route is not None
    start = time.perf_counter()
    for _ in range(50):
        big.rest.handle(req, route)
    per_page = (time.perf_counter() - start) / 50
    assert per_page < 0.010, f"{per_page * 1000:.2f} ms per page"
