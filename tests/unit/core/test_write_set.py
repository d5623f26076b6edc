"""WriteSet's own operations: how writers' shares merge, how a batch drops nodes, and
how the writes split into batches (node byte order, deletes with the first)."""

from __future__ import annotations

from joulie_tasks.core import models


def label(node: str) -> models.LabelWrite:
    return models.LabelWrite(node=models.NodeName(node), labels={"p": "eco"})


def profile(node: str) -> models.NppWrite:
    spec = models.NppSpec(
        node_name=models.NodeName(node),
        profile=models.Profile.ECO,
        cap_watts=100.0,
        policy_name="static-partition-v1",
    )
    return models.NppWrite(name=models.NppName(node), spec=spec, create=True)


def twin(node: str) -> models.TwinWrite:
    return models.TwinWrite(node=models.NodeName(node), name=node, create=True, spec={"x": 1})


WRITES = models.WriteSet(
    labels=(label("b"), label("a"), label("c")),
    profiles=(profile("c"), profile("a")),
    deletes=(models.NppName("gone"),),
    twins=(twin("d"),),
    twin_deletes=("old",),
)


def test_the_writers_shares_merge_field_by_field() -> None:
    first = models.WriteSet(labels=(label("a"),), deletes=(models.NppName("x"),))
    second = models.WriteSet(profiles=(profile("a"),), twins=(twin("a"),))
    merged = first.merged(second)
    assert merged == models.WriteSet(
        labels=(label("a"),),
        profiles=(profile("a"),),
        deletes=(models.NppName("x"),),
        twins=(twin("a"),),
    )


def test_a_set_without_some_nodes_keeps_the_others_and_every_delete() -> None:
    kept = WRITES.without({"a", "d"})
    assert [w.node for w in kept.labels] == ["b", "c"]
    assert [w.spec.node_name for w in kept.profiles] == ["c"]
    assert kept.twins == ()
    assert (kept.deletes, kept.twin_deletes) == (WRITES.deletes, WRITES.twin_deletes)


def test_batches_take_nodes_in_byte_order_with_the_deletes_in_the_first() -> None:
    first, second = WRITES.batches(2)
    assert first.nodes() == {"a", "b"}
    assert second.nodes() == {"c", "d"}
    assert [w.node for w in first.labels] == ["a", "b"]
    assert (first.deletes, first.twin_deletes) == (WRITES.deletes, WRITES.twin_deletes)
    assert (second.deletes, second.twin_deletes) == ((), ())
    merged = first.merged(second)
    assert merged.nodes() == WRITES.nodes()


def test_deletes_alone_still_make_one_batch() -> None:
    only_deletes = models.WriteSet(deletes=(models.NppName("gone"),))
    assert only_deletes.batches(10) == (only_deletes,)
