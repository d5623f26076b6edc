"""Stage 6: what is written — NodePowerProfiles and two node labels (docs/SPEC.md §7).

The first half of this module is pure: two writers, :func:`label_writes` and
:func:`profile_writes`, each diff the guarded plan against the snapshot and return
their share of the minimal :class:`models.WriteSet` (an unchanged node costs no
write; a hand-edited profile object or label is restored); core/twin.py is the
third (NodeTwins), and core/decide.py's ``writers_for`` picks them by OUTPUT_API. Object
names come from :func:`naming.assign_npp_names` over *all* nodes of the snapshot, so
a node outside the selector keeps its claim on its name and is never written.
:func:`simulate_apply` applies a write set to a snapshot in memory, which is how the
tests check that a second diff is empty.

The effectful half (applying a write set through the kube port) lives below the
marked section; nothing above it may do I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from joulie_tasks.core import models, naming

API_VERSION = "joulie.io/v1alpha1"
KIND = "NodePowerProfile"
_TRUE, _FALSE = "true", "false"


# --- pure: desired state and diff ---------------------------------------------------------


def desired_writes(
    guarded: models.GuardedPlan,
    *,
    nodes: Sequence[models.NodeInfo],
    profiles: Sequence[models.NppInfo],
    profile_label: str,
    draining_label: str,
) -> models.WriteSet:
    """The writes that bring every decided node's labels and its profile object to the
    plan: :func:`label_writes` and :func:`profile_writes` merged."""
    return label_writes(
        guarded, nodes=nodes, profile_label=profile_label, draining_label=draining_label
    ).merged(profile_writes(guarded, nodes=nodes, profiles=profiles))


def label_writes(
    guarded: models.GuardedPlan,
    *,
    nodes: Sequence[models.NodeInfo],
    profile_label: str,
    draining_label: str,
) -> models.WriteSet:
    """The label writer: both labels of a decided node, written together when either
    differs. ``nodes`` is the full cluster node list; a decision for a node absent from
    it is treated as a node without labels. A postponed decision writes nothing."""
    current_labels = {node.name: node.labels for node in nodes}
    writes: list[models.LabelWrite] = []
    for decision in guarded.decisions:
        if decision.postponed:
            continue  # MAX_TRANSITIONS_PER_TICK: this node changes in a later tick
        wanted = {
            profile_label: decision.profile.value,
            draining_label: _TRUE if decision.draining else _FALSE,
        }
        have = current_labels.get(decision.node, {})
        if any(have.get(key) != value for key, value in wanted.items()):
            writes.append(models.LabelWrite(node=decision.node, labels=wanted))
    return models.WriteSet(labels=tuple(writes))


def profile_writes(
    guarded: models.GuardedPlan,
    *,
    nodes: Sequence[models.NodeInfo],
    profiles: Sequence[models.NppInfo],
) -> models.WriteSet:
    """The NodePowerProfile writer: a profile object is created when none has its name,
    and replaced — carrying the existing resource version — when its node, profile,
    cap, policy name or owner label differs. A postponed decision writes nothing.
    Operator-owned profiles of nodes that no longer exist are deleted. ``nodes`` is the
    full cluster node list (every node keeps its claim on its name)."""
    names = naming.assign_npp_names([n.name for n in nodes] + [d.node for d in guarded.decisions])
    existing = {npp.name: npp for npp in profiles}
    npp_writes: list[models.NppWrite] = []
    for decision in guarded.decisions:
        if decision.postponed:
            continue  # MAX_TRANSITIONS_PER_TICK: this node changes in a later tick
        spec = models.NppSpec(
            node_name=decision.node,
            profile=decision.profile,
            cap_watts=decision.cap_watts,
            policy_name=decision.policy_name,
        )
        name = names[decision.node]
        found = existing.get(name)
        if found is None:
            npp_writes.append(models.NppWrite(name=name, spec=spec, create=True))
        elif not _is_current(found, spec):
            npp_writes.append(
                models.NppWrite(
                    name=name, spec=spec, create=False, resource_version=found.resource_version
                )
            )
    return models.WriteSet(
        profiles=tuple(npp_writes),
        deletes=_orphans(profiles, nodes=nodes, names=names, decisions=guarded.decisions),
    )


def _orphans(
    profiles: Sequence[models.NppInfo],
    *,
    nodes: Sequence[models.NodeInfo],
    names: Mapping[models.NodeName, models.NppName],
    decisions: Sequence[models.Decision],
) -> tuple[models.NppName, ...]:
    """Operator-owned profile objects to delete: those of nodes that no longer exist,
    and superseded duplicates of a node written this tick under another name (its
    name changed when a node with a colliding sanitised name came or went).

    An ineligible node's object is left untouched (docs/SPEC.md §2); an object whose name is
    assigned to a decided node is rewritten, not deleted; a profile not labelled as
    ours is never deleted; an empty node list (read as empty) deletes nothing.
    """
    existing = {node.name for node in nodes}
    if not existing:
        return ()
    written = {d.node for d in decisions if not d.postponed}
    reserved = {names[d.node] for d in decisions}

    def is_orphan(npp: models.NppInfo) -> bool:
        owner = npp.node_name
        if npp.managed_by != models.MANAGED_BY_VALUE or owner is None or npp.name in reserved:
            return False
        if owner not in existing:
            return True
        return owner in written and names.get(models.NodeName(owner)) != npp.name

    return tuple(sorted(npp.name for npp in profiles if is_orphan(npp)))


def npp_manifest(
    name: models.NppName, spec: models.NppSpec, *, resource_version: str | None = None
) -> dict[str, object]:
    """The JSON body of a NodePowerProfile for create (or replace, with a version).

    A whole-number cap is rendered as an integer (``5000``, not ``5000.0``).
    """
    metadata: dict[str, object] = {
        "name": name,
        "labels": {models.MANAGED_BY_LABEL: models.MANAGED_BY_VALUE},
    }
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    cap: float | int = int(spec.cap_watts) if spec.cap_watts.is_integer() else spec.cap_watts
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "nodeName": spec.node_name,
            "profile": spec.profile.value,
            "cpu": {"packagePowerCapWatts": cap},
            "policy": {"name": spec.policy_name},
        },
    }


def simulate_apply(
    writes: models.WriteSet,
    *,
    nodes: Sequence[models.NodeInfo],
    profiles: Sequence[models.NppInfo],
) -> tuple[tuple[models.NodeInfo, ...], tuple[models.NppInfo, ...]]:
    """The snapshot as it would read after ``writes`` succeeded (in memory only).

    Label writes merge into the node's labels; profile writes create or replace the
    object, with a new resource version. Nodes missing from ``nodes`` are not created.
    """
    patches = {w.node: w.labels for w in writes.labels}
    new_nodes = tuple(
        node.model_copy(update={"labels": {**node.labels, **patches[node.name]}})
        if node.name in patches
        else node
        for node in nodes
    )
    by_name = {npp.name: npp for npp in profiles}
    for write in writes.profiles:
        old = by_name.get(write.name)
        version = int(old.resource_version or 0) + 1 if old and _is_int(old.resource_version) else 1
        by_name[write.name] = models.NppInfo(
            name=write.name,
            resource_version=str(version),
            node_name=write.spec.node_name,
            profile=write.spec.profile.value,
            cap_watts=write.spec.cap_watts,
            policy_name=write.spec.policy_name,
            managed_by=models.MANAGED_BY_VALUE,
        )
    for name in writes.deletes:
        by_name.pop(name, None)
    return new_nodes, tuple(by_name.values())


def _is_current(found: models.NppInfo, spec: models.NppSpec) -> bool:
    return (
        found.node_name == spec.node_name
        and found.profile == spec.profile.value
        and found.cap_watts == spec.cap_watts
        and found.policy_name == spec.policy_name
        and found.managed_by == models.MANAGED_BY_VALUE
    )


def _is_int(text: str | None) -> bool:
    return text is not None and text.isdigit()


# --- effects: applying a write set (kube port) --------------------------------------------
