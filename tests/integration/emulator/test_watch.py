"""Watches through the official client's ``watch.Watch`` and raw streaming: initial
ADDED events, resume from a resourceVersion, DELETED with a newer version, bookmarks,
410 Expired for a compacted version, timeoutSeconds, server-closed streams.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from kubernetes import client, watch

from joulie_testbed.emulator import Emulator
from joulie_testbed.procs import wait_for


def _node(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def _rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


def _raw_events(core: client.CoreV1Api, **params: Any) -> tuple[list[dict[str, Any]], Any]:
    resp = core.list_node(watch=True, _preload_content=False, **params)
    events = [json.loads(line) for line in resp.read().decode().splitlines() if line.strip()]
    return events, resp


def test_initial_added_events_then_live_changes(core: client.CoreV1Api, emulator: Emulator) -> None:
    emulator.put_object(_node("a"))
    seen: list[tuple[str, str]] = []
    w = watch.Watch()

    def consume() -> None:
        for event in w.stream(core.list_node, timeout_seconds=10):
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 3:
                w.stop()

    thread = threading.Thread(target=consume)
    thread.start()
    wait_for(lambda: seen, timeout=10, what="the initial ADDED")
    emulator.put_object(_node("b"))
    emulator.delete_object("nodes", "a")
    thread.join(timeout=15)
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a")]


def test_resume_from_a_version_replays_only_later_changes(
    core: client.CoreV1Api, emulator: Emulator
) -> None:
    first = emulator.put_object(_node("a"))
    emulator.put_object(_node("b"))
    emulator.mutate_node_labels("a", {"x": "1"})
    emulator.delete_object("nodes", "b")
    events, _ = _raw_events(core, resource_version=str(_rv(first)), timeout_seconds=1)
    kinds = [(e["type"], e["object"]["metadata"]["name"]) for e in events]
    assert kinds == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    versions = [_rv(e["object"]) for e in events]
    assert versions == sorted(versions)
    assert versions[0] > _rv(first)


def test_deleted_event_carries_a_newer_version(core: client.CoreV1Api, emulator: Emulator) -> None:
    created = emulator.put_object(_node("a"))
    emulator.delete_object("nodes", "a")
    events, _ = _raw_events(core, resource_version=str(_rv(created)), timeout_seconds=1)
    assert [e["type"] for e in events] == ["DELETED"]
    assert _rv(events[0]["object"]) > _rv(created)


def test_other_resources_and_selectors_filter_events(
    core: client.CoreV1Api, emulator: Emulator
) -> None:
    start = int(emulator.store.resource_version)
    emulator.put_object(_node("a", role="x"))
    emulator.put_object(_node("b", role="y"))
    emulator.put_object(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "d"},
            "spec": {"containers": []},
        }
    )
    events, _ = _raw_events(
        core, resource_version=str(start), label_selector="role=y", timeout_seconds=1
    )
    assert [e["object"]["metadata"]["name"] for e in events] == ["b"]


def test_bookmarks_carry_the_current_version(core: client.CoreV1Api, emulator: Emulator) -> None:
    emulator.set_bookmark_interval(0.1)
    try:
        last = emulator.put_object(_node("a"))
        events, _ = _raw_events(
            core, resource_version=str(_rv(last)), allow_watch_bookmarks=True, timeout_seconds=1
        )
    finally:
        emulator.set_bookmark_interval(1.0)
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks, events
    assert all(e["type"] == "BOOKMARK" for e in events)
    assert {_rv(b["object"]) for b in bookmarks} == {_rv(last)}


def test_no_bookmarks_unless_asked(core: client.CoreV1Api, emulator: Emulator) -> None:
    emulator.set_bookmark_interval(0.1)
    try:
        last = emulator.put_object(_node("a"))
        events, _ = _raw_events(core, resource_version=str(_rv(last)), timeout_seconds=1)
    finally:
        emulator.set_bookmark_interval(1.0)
    assert events == []


def test_a_compacted_version_answers_410_expired(
    core: client.CoreV1Api, emulator: Emulator
) -> None:
    old = emulator.put_object(_node("a"))
    emulator.put_object(_node("b"))
    emulator.compact()
    events, resp = _raw_events(core, resource_version=str(_rv(old)), timeout_seconds=5)
    assert resp.status == 200
    assert len(events) == 1
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410
    assert events[0]["object"]["reason"] == "Expired"


def test_the_official_watch_raises_on_410(core: client.CoreV1Api, emulator: Emulator) -> None:
    old = emulator.put_object(_node("a"))
    emulator.put_object(_node("b"))
    emulator.compact()
    w = watch.Watch()
    stream = w.stream(core.list_node, resource_version=str(_rv(old)), timeout_seconds=5)
    with pytest.raises(client.ApiException) as err:
        next(stream)
    assert err.value.status == 410


def test_server_closed_streams_end_cleanly(core: client.CoreV1Api, emulator: Emulator) -> None:
    emulator.put_object(_node("a"))
    got: list[str] = []
    done = threading.Event()

    def consume() -> None:
        resp = core.list_node(watch=True, _preload_content=False, timeout_seconds=60)
        for line in resp.stream(amt=None):
            got.append(line.decode())
        done.set()

    thread = threading.Thread(target=consume)
    thread.start()
    wait_for(lambda: got, timeout=10, what="the first event")
    emulator.close_watches()
    assert done.wait(10)
    thread.join()
