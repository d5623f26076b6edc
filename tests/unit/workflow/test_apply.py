"""apply.py against FakeKube: per-node 409 closures, fail-fast 4xx, isolation of failures."""

from __future__ import annotations

from typing import Any

from joulie_tasks import errors
from joulie_tasks.core import models, write
from joulie_tasks.workflow import apply
from tests.fakes import FakeKube

LABELS = {"joulie.io/power-profile": "eco", "joulie.io/draining": "false"}


def node(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": dict(labels or {}), "resourceVersion": "1"}}


def spec(node_name: str, profile: str = "eco") -> models.NppSpec:
    return models.NppSpec(
        node_name=models.NodeName(node_name),
        profile=models.Profile(profile),
        cap_watts=120,
        policy_name="static-partition-v1",
    )


def label_write(name: str) -> apply.NodeWrites:
    return apply.NodeWrites(
        node=models.NodeName(name),
        label=models.LabelWrite(node=models.NodeName(name), labels=LABELS),
    )


def run(fake: FakeKube, *writes: apply.NodeWrites) -> apply.ApplyResult:
    return apply.apply_writes(
        list(writes), gateway=fake, concurrency=2, tick_id="t", sleep=lambda _: None
    )


def test_labels_are_patched_and_counted() -> None:
    fake = FakeKube()
    fake.add("nodes", node("a"))
    result = run(fake, label_write("a"))
    assert result.written == 1
    assert result.failures == {}
    assert fake.objects[("nodes", "a")]["metadata"]["labels"] == LABELS


def test_a_conflict_rereads_and_skips_the_write_when_the_labels_already_hold() -> None:
    fake = FakeKube()
    fake.add("nodes", node("a", LABELS))
    fake.fail("patch", "nodes", errors.KubeConflict("409", status=409))
    result = run(fake, label_write("a"))
    assert result.failures == {}
    assert result.written == 0
    assert result.retries["conflict"] == 1
    assert fake.writes == []


def test_a_vanished_node_is_skipped_not_failed_and_the_other_nodes_are_written() -> None:
    fake = FakeKube()
    fake.add("nodes", node("b"))
    result = run(fake, label_write("a"), label_write("b"))
    assert result.failures == {}
    assert list(result.skipped) == ["a"]
    assert "no longer exists" in result.skipped["a"]
    assert fake.writes == [("patch", "nodes", "b")]


def test_transient_errors_are_retried_within_the_conflict_closure() -> None:
    fake = FakeKube()
    fake.add("nodes", node("a"))
    fake.fail("patch", "nodes", errors.KubeTransient("503", status=503))
    result = run(fake, label_write("a"))
    assert result.failures == {}
    assert result.retries["transient"] == 1


def test_a_stale_profile_is_reread_and_replaced_with_the_current_version() -> None:
    fake = FakeKube()
    name = models.NppName("node-a")
    fake.add(
        "nodepowerprofiles",
        write.npp_manifest(name, spec("a", "performance"), resource_version="7"),
    )
    desired = models.NppWrite(name=name, spec=spec("a"), create=False, resource_version="3")
    result = run(fake, apply.NodeWrites(node=models.NodeName("a"), profile=desired))
    assert result.failures == {}
    assert fake.objects[("nodepowerprofiles", "node-a")]["spec"]["profile"] == "eco"
    assert result.retries["conflict"] == 1


def test_a_profile_deleted_since_the_snapshot_is_created_again() -> None:
    fake = FakeKube()
    name = models.NppName("node-a")
    desired = models.NppWrite(name=name, spec=spec("a"), create=False, resource_version="3")
    result = run(fake, apply.NodeWrites(node=models.NodeName("a"), profile=desired))
    assert result.failures == {}
    assert ("create", "nodepowerprofiles", "node-a") in fake.writes


def test_an_invalid_profile_fails_fast_with_node_and_reason() -> None:
    fake = FakeKube()
    fake.fail("create", "nodepowerprofiles", errors.KubeFatal("422 cap must be >= 1", status=422))
    desired = models.NppWrite(name=models.NppName("node-a"), spec=spec("a"), create=True)
    result = run(fake, apply.NodeWrites(node=models.NodeName("a"), profile=desired))
    assert "422" in result.failures["a"]
    assert result.retries == {}


def test_a_profile_deleted_since_the_snapshot_is_read_again_and_created() -> None:
    # Given a replace planned at version 1 of a profile that is gone by the time of the write
    fake = FakeKube()
    name = models.NppName("node-a")
    write = apply.NodeWrites(
        node=models.NodeName("a"),
        profile=models.NppWrite(name=name, spec=spec("a"), create=False, resource_version="1"),
    )

    # When the writes are applied
    result = run(fake, write)

    # Then the 404 led to one re-read and a create, not a failure
    assert result.failures == {}
    assert result.written == 1
    assert fake.writes == [("create", "nodepowerprofiles", "node-a")]
