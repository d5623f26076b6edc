"""Stage 6, second writer: NodeTwin objects of the newest generation (docs/SPEC.md §13).

Beside write.py's NodePowerProfile writer, and chosen by OUTPUT_API: one cluster-scoped
NodeTwin per decided node, whose ``spec`` carries the profile and the caps the agent
enforces and whose ``status`` carries what the scheduler extender reads. Like
write.py, :func:`desired_twin_writes` diffs the guarded plan against the snapshot and
returns only what changed, so a converged tick writes nothing.

Where the reference is wrong we are right on purpose (docs/SPEC.md §13.9):

- spec and status go to **one** object, named from the sanitised node name (the
  reference writes status under the raw name, so nodes with dots never get one);
- two nodes that sanitise alike get distinct names (naming.py's collision rule, without
  the ``node-`` prefix that only NodePowerProfiles carry);
- the spec is written only when it differs, the status when its content differs or its
  ``lastUpdated`` is older than :data:`STATUS_REFRESH_S` (the extender ignores twins
  older than 5 min, so a converged node costs one status patch per refresh period);
- twins of deleted and unmanaged nodes are deleted (the reference never deletes
  anything); each twin we write carries ``joulie.io/managed-by=operator`` so that only
  ours are.

Pure: no I/O, no clock (the tick time comes in), no logging.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping, Sequence

from joulie_tasks.core import caps as capping
from joulie_tasks.core import hardware, models, naming, twin_status

API_VERSION = "joulie.io/v1alpha1"
KIND = "NodeTwin"
#: A status whose content is unchanged is rewritten once its lastUpdated is this old:
#: half the extender's 5-minute staleness threshold (NODETWIN.md §7.13).
STATUS_REFRESH_S = 150.0


#: The agent owns this status key; the operator never compares or writes it.
AGENT_STATUS_KEY = "controlStatus"
_STAMP = "lastUpdated"


def twin_names(node_names: Sequence[str]) -> dict[models.NodeName, str]:
    """Distinct NodeTwin names for every node: the sanitised name, with naming.py's
    hash suffix for colliding or over-long names (the reference has no collision rule)."""
    assigned = naming.assign_npp_names(node_names)
    return {
        node: str(name).removeprefix(naming.PREFIX) if naming.sanitise_node_name(node) else name
        for node, name in assigned.items()
    }


def twin_spec(
    decision: models.Decision,
    *,
    node: models.NodeInfo | None = None,
    hw: hardware.Hardware = hardware.NO_HARDWARE,
    caps: capping.Caps | None = None,
) -> dict[str, object]:
    """The ``spec`` of a decided node (NODETWIN.md §3.3): eco while draining, the caps
    of caps.py (``hw`` is the planner's view of the node's hardware)."""
    caps = caps or capping.Caps()
    gpus = node.gpus if node is not None else 0
    spec: dict[str, object] = {
        "nodeName": decision.node,
        "profile": decision.profile.value,
        "cpu": capping.cpu_cap(
            decision.profile, watts=decision.cap_watts, gpus=gpus, hw=hw, caps=caps
        ),
        "policy": {"name": decision.policy_name},
        "scheduling": {"draining": decision.draining},
    }
    labels = node.labels if node is not None else {}
    gpu = capping.gpu_cap(decision.profile, gpus=gpus, hw=hw, labels=labels, caps=caps)
    if gpu is not None:
        spec["gpu"] = {"powerCap": gpu}
    return spec


def twin_status_of(
    decision: models.Decision,
    *,
    spec: Mapping[str, object],
    tick_time: float,
    hw: hardware.Hardware = hardware.NO_HARDWARE,
) -> dict[str, object]:
    """The operator-owned ``status`` (NODETWIN.md §7): the figures of twin_status.py
    from the node's NodeHardware (``hw``, the twin view) and the written percentages
    (100 where none is written), with no power source; ``lastUpdated`` the tick time."""
    cpu = spec.get("cpu")
    gpu = spec.get("gpu")
    cap = gpu.get("powerCap") if isinstance(gpu, dict) else None
    cpu_pct = cpu.get("packagePowerCapPctOfMax", 100) if isinstance(cpu, dict) else 100
    gpu_pct = cap.get("capPctOfMax", 100) if isinstance(cap, dict) else 100
    figures = _figures(
        hw,
        decision.profile.value,
        decision.draining,
        float(cpu_pct) if isinstance(cpu_pct, int | float) else 100.0,
        float(gpu_pct) if isinstance(gpu_pct, int | float) else 100.0,
    )
    # a fresh copy of each nested map: the cached figures are shared between nodes
    status = {k: dict(v) if isinstance(v, dict) else v for k, v in figures.items()}
    status[_STAMP] = rfc3339(tick_time)
    return status


@functools.lru_cache(maxsize=4096)
def _figures(
    hw: hardware.Hardware, profile: str, draining: bool, cpu_pct: float, gpu_pct: float
) -> dict[str, object]:
    """twin_status.compute, memoised: most nodes share their hardware and caps, and a
    large cluster would otherwise compute the same figures thousands of times a tick."""
    return twin_status.compute(
        hw, profile=profile, draining=draining, cpu_pct=cpu_pct, gpu_pct=gpu_pct
    )


def desired_twin_writes(
    guarded: models.GuardedPlan,
    *,
    nodes: Sequence[models.NodeInfo],
    twins: Sequence[models.TwinInfo],
    caps: capping.Caps | None = None,
    planner_hw: Mapping[models.NodeName, hardware.Hardware] | None = None,
    twin_hw: Mapping[models.NodeName, hardware.Hardware] | None = None,
) -> tuple[tuple[models.TwinWrite, ...], tuple[str, ...]]:
    """The twin writes and deletes that bring every decided node's twin to the plan.

    A postponed decision writes nothing. An operator-owned twin (label
    ``joulie.io/managed-by=operator``) is deleted when its node no longer exists or is
    no longer managed (the extender would otherwise keep filtering on its stale class),
    and when it is a second twin of a decided node under an outdated name. Twins we did
    not create are never deleted, and nothing is deleted when no node is decided.
    ``planner_hw`` (caps) and ``twin_hw`` (status) are hardware.py's two views; a node
    missing from them has no known hardware.
    """
    names = twin_names([n.name for n in nodes] + [d.node for d in guarded.decisions])
    by_name = {n.name: n for n in nodes}
    planner_hw = planner_hw or {}
    twin_hw = twin_hw or {}
    existing = {t.name: t for t in twins}
    writes: list[models.TwinWrite] = []
    for decision in guarded.decisions:
        if decision.postponed:
            continue
        name = names[decision.node]
        spec = twin_spec(
            decision,
            node=by_name.get(decision.node),
            hw=planner_hw.get(decision.node, hardware.NO_HARDWARE),
            caps=caps,
        )
        status = twin_status_of(
            decision,
            spec=spec,
            tick_time=guarded.tick_time,
            hw=twin_hw.get(decision.node, hardware.NO_HARDWARE),
        )
        found = existing.get(name)
        if found is None:
            writes.append(
                models.TwinWrite(
                    name=name, node=decision.node, create=True, spec=spec, status=status
                )
            )
            continue
        owned = found.managed_by == models.MANAGED_BY_VALUE
        new_spec = None if found.spec == spec and owned else spec
        new_status = None if _status_fresh(found.status, status, guarded.tick_time) else status
        if new_spec is not None or new_status is not None:
            writes.append(
                models.TwinWrite(
                    name=name,
                    node=decision.node,
                    create=False,
                    resource_version=found.resource_version,
                    spec=new_spec,
                    status=new_status,
                )
            )
    return tuple(writes), _orphans(twins, nodes=nodes, names=names, decisions=guarded.decisions)


def twin_manifest(write: models.TwinWrite) -> dict[str, object]:
    """The JSON body that creates or replaces a twin's spec (status goes separately:
    the server ignores ``status`` on the main resource of a CRD with the subresource)."""
    metadata: dict[str, object] = {
        "name": write.name,
        "labels": {models.MANAGED_BY_LABEL: models.MANAGED_BY_VALUE},
    }
    if not write.create and write.resource_version is not None:
        metadata["resourceVersion"] = write.resource_version
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": write.spec}


@functools.lru_cache(maxsize=8)  # one tick time for every node of a tick
def rfc3339(tick_time: float) -> str:
    """RFC 3339 UTC with whole seconds, as the reference writes ``lastUpdated``."""
    stamp = dt.datetime.fromtimestamp(int(tick_time), tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _status_fresh(
    current: Mapping[str, object], wanted: Mapping[str, object], tick_time: float
) -> bool:
    def content(status: Mapping[str, object]) -> dict[str, object]:
        return {k: v for k, v in status.items() if k not in (_STAMP, AGENT_STATUS_KEY)}

    if content(current) != content(wanted):
        return False
    written = _stamp_time(current)
    return written is not None and 0 <= tick_time - written < STATUS_REFRESH_S


def _stamp_time(status: Mapping[str, object]) -> float | None:
    """The status's ``lastUpdated`` as Unix time, None when missing or malformed."""
    stamp = status.get(_STAMP)
    if not isinstance(stamp, str):
        return None
    try:
        written = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return written.timestamp()


def status_due(twins: Sequence[models.TwinInfo]) -> float | None:
    """When the first status of a twin we manage falls due for its refresh (Unix time);
    None with no such twin. One without a readable stamp is due at once (0)."""
    stamps = [_stamp_time(t.status) for t in twins if t.managed_by == models.MANAGED_BY_VALUE]
    if not stamps:
        return None
    return min((0.0 if s is None else s + STATUS_REFRESH_S) for s in stamps)


def _orphans(
    twins: Sequence[models.TwinInfo],
    *,
    nodes: Sequence[models.NodeInfo],
    names: Mapping[models.NodeName, str],
    decisions: Sequence[models.Decision],
) -> tuple[str, ...]:
    if not nodes or not decisions:
        return ()  # nothing read or nothing managed: a misread must not delete every twin
    decided = {d.node for d in decisions}
    reserved = {names[d.node] for d in decisions}

    def is_orphan(found: models.TwinInfo) -> bool:
        if found.managed_by != models.MANAGED_BY_VALUE or found.name in reserved:
            return False
        owner = found.node_name
        return (
            owner is None or owner not in decided or names.get(models.NodeName(owner)) != found.name
        )

    return tuple(sorted(t.name for t in twins if is_orphan(t)))
