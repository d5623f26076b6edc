"""Lists: pagination, label and field selectors, namespaces, list metadata.

Covers: limit/continue walking 2,500 pods exactly once in key order;
remainingItemCount; pages staying correct while objects are added; the full
label-selector grammar; field selectors on spec.nodeName, metadata.*, status.phase;
400 on malformed selectors and unsupported field labels (watches: test_watch.py).
"""

from __future__ import annotations

import pytest
from kubernetes import client

from joulie_testbed.emulator import Emulator, seed
from tests.integration.emulator.builders import node, status_of


@pytest.fixture
def pods_2500(emulator: Emulator) -> list[str]:
    cluster = seed.generate_cluster(50, 50, seed=1, namespaces=7)
    emulator.load(cluster.nodes, cluster.pods)
    return sorted(f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in cluster.pods)


def test_pagination_returns_every_pod_exactly_once(
    core: client.CoreV1Api, pods_2500: list[str]
) -> None:
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = core.list_pod_for_all_namespaces(limit=500, _continue=token)
        pages += 1
        assert len(page.items) <= 500
        seen += [f"{p.metadata.namespace}/{p.metadata.name}" for p in page.items]
        token = page.metadata._continue
        if not token:
            assert page.metadata.remaining_item_count is None
            break
        assert page.metadata.remaining_item_count == len(pods_2500) - len(seen)
    assert pages == 5
    assert seen == pods_2500


def test_pagination_tolerates_writes_between_pages(
    core: client.CoreV1Api, emulator: Emulator, pods_2500: list[str]
) -> None:
    first = core.list_pod_for_all_namespaces(limit=1000)
    emulator.delete_object("pods", pods_2500[0].split("/")[1], pods_2500[0].split("/")[0])
    rest = core.list_pod_for_all_namespaces(limit=5000, _continue=first.metadata._continue)
    names = [f"{p.metadata.namespace}/{p.metadata.name}" for p in first.items + rest.items]
    assert names == pods_2500


def test_namespaced_list_pages_stay_in_their_namespace(
    core: client.CoreV1Api, pods_2500: list[str]
) -> None:
    expected = [k for k in pods_2500 if k.startswith("ns-03/")]
    seen, token = [], None
    while True:
        page = core.list_namespaced_pod("ns-03", limit=100, _continue=token)
        seen += [f"ns-03/{p.metadata.name}" for p in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert seen == expected


def test_invalid_continue_token_is_400(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as err:
        core.list_pod_for_all_namespaces(limit=5, _continue="not-a-token")
    assert err.value.status == 400


@pytest.fixture
def labelled_nodes(core: client.CoreV1Api) -> None:
    core.create_node(node("node-00001", **{"joulie.io/managed": "true", "tier": "1"}))
    core.create_node(
        node(
            "node-00002", **{"joulie.io/managed": "true", "joulie.io/reserved": "true", "tier": "2"}
        )
    )
    core.create_node(node("node-00003", **{"joulie.io/managed": "false", "tier": "3"}))
    core.create_node(node("node-00004"))


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("joulie.io/managed=true", [1, 2]),
        ("joulie.io/managed==true", [1, 2]),
        ("joulie.io/managed!=true", [3, 4]),
        ("joulie.io/managed in (true, false)", [1, 2, 3]),
        ("joulie.io/managed notin (true)", [3, 4]),
        ("joulie.io/reserved", [2]),
        ("!joulie.io/reserved", [1, 3, 4]),
        ("joulie.io/managed=true,!joulie.io/reserved", [1]),
        ("tier>1", [2, 3]),
        ("tier<2", [1]),
        ("", [1, 2, 3, 4]),
    ],
)
def test_label_selectors(
    core: client.CoreV1Api, labelled_nodes: None, selector: str, expected: list[int]
) -> None:
    names = [n.metadata.name for n in core.list_node(label_selector=selector).items]
    assert names == [f"node-{i:05d}" for i in expected]


@pytest.mark.parametrize("selector", ["a in (b", "=b", "a b", "a=b=c", "Not A Key=1"])
def test_malformed_label_selectors_are_400(core: client.CoreV1Api, selector: str) -> None:
    with pytest.raises(client.ApiException) as err:
        core.list_node(label_selector=selector)
    assert err.value.status == 400
    assert status_of(err.value)["reason"] == "BadRequest"


def test_field_selectors_on_pods(core: client.CoreV1Api, emulator: Emulator) -> None:
    cluster = seed.generate_cluster(5, 20, seed=3)
    emulator.load(cluster.nodes, cluster.pods)

    def names(**kwargs: str) -> list[str]:
        return sorted(p.metadata.name for p in core.list_pod_for_all_namespaces(**kwargs).items)

    def expect(pred) -> list[str]:  # type: ignore[no-untyped-def]
        return sorted(p["metadata"]["name"] for p in cluster.pods if pred(p))

    on_node = expect(lambda p: p["spec"].get("nodeName") == "node-00002")
    assert names(field_selector="spec.nodeName=node-00002") == on_node
    assert names(field_selector="spec.nodeName==node-00002") == on_node
    assert names(field_selector="spec.nodeName=") == expect(lambda p: "nodeName" not in p["spec"])
    active = expect(lambda p: p["status"]["phase"] not in ("Succeeded", "Failed"))
    assert names(field_selector="status.phase!=Succeeded,status.phase!=Failed") == active
    assert names(field_selector="metadata.namespace=ns-01,metadata.name!=pod-000001") == expect(
        lambda p: p["metadata"]["namespace"] == "ns-01" and p["metadata"]["name"] != "pod-000001"
    )
    both = names(
        field_selector="spec.nodeName=node-00002", label_selector="emulator.joulie.io/shape=none"
    )
    assert both == expect(
        lambda p: (
            p["spec"].get("nodeName") == "node-00002"
            and p["metadata"]["labels"][seed.SHAPE_LABEL] == "none"
        )
    )


def test_field_selector_on_nodes_and_unsupported_labels(core: client.CoreV1Api) -> None:
    core.create_node(node("node-00001"))
    core.create_node({**node("node-00002"), "spec": {"unschedulable": True}})
    assert [
        n.metadata.name for n in core.list_node(field_selector="spec.unschedulable=true").items
    ] == ["node-00002"]
    assert [
        n.metadata.name for n in core.list_node(field_selector="metadata.name=node-00001").items
    ] == ["node-00001"]
    with pytest.raises(client.ApiException) as err:
        core.list_node(field_selector="spec.nodeName=x")
    assert err.value.status == 400
    assert "field label not supported" in status_of(err.value)["message"]


def test_selected_pages_fill_up_to_the_limit(core: client.CoreV1Api, pods_2500: list[str]) -> None:
    got, token = [], None
    while True:
        page = core.list_pod_for_all_namespaces(
            limit=100, _continue=token, field_selector="status.phase=Running"
        )
        got += [p.metadata.name for p in page.items]
        token = page.metadata._continue
        if not token:
            break
        assert len(page.items) == 100
    assert len(got) == len(set(got)) > 0


def test_node_name_lists_follow_writes_and_pages(
    core: client.CoreV1Api, emulator: Emulator, pods_2500: list[str]
) -> None:
    """spec.nodeName lists go through an index (as the real server's): it must follow
    every write, and page, namespace and token exactly like a scan."""

    def on_node(node_name: str, namespace: str | None = None, limit: int = 7) -> list[str]:
        got, token = [], None
        for _ in range(1000):
            kwargs = {"field_selector": f"spec.nodeName={node_name}", "limit": limit}
            page = (
                core.list_namespaced_pod(namespace, _continue=token, **kwargs)
                if namespace
                else core.list_pod_for_all_namespaces(_continue=token, **kwargs)
            )
            got += [f"{p.metadata.namespace}/{p.metadata.name}" for p in page.items]
            token = page.metadata._continue
            if not token:
                return got
        raise AssertionError("pagination did not end")

    def expected(node_name: str, namespace: str | None = None) -> list[str]:
        return [
            f"{p['metadata']['namespace']}/{p['metadata']['name']}"
            for p in emulator.list_objects("pods")
            if p["spec"].get("nodeName", "") == node_name
            and namespace in (None, p["metadata"]["namespace"])
        ]

    before = expected("node-00003")
    assert on_node("node-00003") == before
    assert len(before) > 7
    assert on_node("node-00003", "ns-02") == expected("node-00003", "ns-02")
    ns, name = before[0].split("/")
    moved = emulator.get_object("pods", name, ns)
    assert moved is not None
    moved["spec"]["nodeName"] = "node-00004"
    emulator.put_object(moved)
    emulator.delete_object("pods", *reversed(before[1].split("/")))
    assert on_node("node-00003") == expected("node-00003") == before[2:]
    assert on_node("node-00004", limit=500) == expected("node-00004")
    assert on_node("") == expected("")
