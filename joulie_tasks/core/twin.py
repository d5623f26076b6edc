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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from joulie_tasks.core import models, naming

API_VERSION = "joulie.io/v1alpha1"
KIND = "NodeTwin"
#: A status whose content is unchanged is rewritten once its lastUpdated is this old:
#: half the extender's 5-minute staleness threshold (NODETWIN.md §7.13).
STATUS_REFRESH_S = 150.0


@dataclass(frozen=True)
class Caps:
    """Caps in percent of max by profile (NODETWIN.md §6); a GPU percentage of 0 means
    no GPU intent. Defaults: the reference's chart values, 100/60 for both."""

    cpu: Mapping[models.Profile, float] = field(
        default_factory=lambda: {models.Profile.PERFORMANCE: 100.0, models.Profile.ECO: 60.0}
    )
    gpu: Mapping[models.Profile, float] = field(
        default_factory=lambda: {models.Profile.PERFORMANCE: 100.0, models.Profile.ECO: 60.0}
    )


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


def twin_spec(decision: models.Decision, *, gpus: int, caps: Caps) -> dict[str, object]:
    """The ``spec`` of a decided node (NODETWIN.md §3.3): eco while draining, caps in
    percent of max. A node with allocatable GPUs gets a per-GPU intent (none when its
    percentage is 0) and **no CPU cap**: the reference writes absolute watts there by
    mistake, against its own stated intent (NODETWIN.md §10.2, docs/SPEC.md §13.9)."""
    spec: dict[str, object] = {
        "nodeName": decision.node,
        "profile": decision.profile.value,
        "cpu": {} if gpus > 0 else {"packagePowerCapPctOfMax": _number(caps.cpu[decision.profile])},
        "policy": {"name": decision.policy_name},
        "scheduling": {"draining": decision.draining},
    }
    gpu_pct = caps.gpu[decision.profile]
    if gpus > 0 and gpu_pct > 0:
        spec["gpu"] = {"powerCap": {"scope": "perGpu", "capPctOfMax": _number(gpu_pct)}}
    return spec


def _effective(spec: Mapping[str, object]) -> dict[str, object]:
    """``effectiveCapState``: the written percentages, 100 where none is written."""
    cpu = spec.get("cpu")
    gpu = spec.get("gpu")
    cap = gpu.get("powerCap") if isinstance(gpu, dict) else None
    cpu_pct = cpu.get("packagePowerCapPctOfMax", 100) if isinstance(cpu, dict) else 100
    gpu_pct = cap.get("capPctOfMax", 100) if isinstance(cap, dict) else 100
    return {"cpuPct": cpu_pct, "gpuPct": gpu_pct}


def twin_status(
    decision: models.Decision, *, spec: Mapping[str, object], tick_time: float
) -> dict[str, object]:
    """The operator-owned ``status`` (NODETWIN.md §7) from what we know: no hardware
    record and no power source, which gives the reference's own figures for that case
    (headroom 100, stress 0, PUE 1.05, budgets and TDPs 0, source ``static``)."""
    return {
        "schedulableClass": "draining" if decision.draining else decision.profile.value,
        "predictedPowerHeadroomScore": 100,
        "predictedCoolingStressScore": 0,
        "predictedPsuStressScore": 0,
        "hardwareDensityScore": 0,
        "estimatedPUE": 1.05,
        "effectiveCapState": _effective(spec),
        "powerMeasurement": {
            "source": "static",
            "measuredNodePowerW": 0,
            "cpuCappedPowerW": 0,
            "gpuCappedPowerW": 0,
            "nodeCappedPowerW": 0,
            "cpuTdpW": 0,
            "gpuTdpW": 0,
            "nodeTdpW": 0,
            "powerTrendWPerMin": 0,
        },
        _STAMP: rfc3339(tick_time),
    }


def desired_twin_writes(
    guarded: models.GuardedPlan,
    *,
    nodes: Sequence[models.NodeInfo],
    twins: Sequence[models.TwinInfo],
    caps: Caps | None = None,
) -> tuple[tuple[models.TwinWrite, ...], tuple[str, ...]]:
    """The twin writes and deletes that bring every decided node's twin to the plan.

    A postponed decision writes nothing. An operator-owned twin (label
    ``joulie.io/managed-by=operator``) is deleted when its node no longer exists or is
    no longer managed (the extender would otherwise keep filtering on its stale class),
    and when it is a second twin of a decided node under an outdated name. Twins we did
    not create are never deleted, and nothing is deleted when no node is decided.
    """
    caps = caps or Caps()
    names = twin_names([n.name for n in nodes] + [d.node for d in guarded.decisions])
    gpus = {n.name: n.gpus for n in nodes}
    existing = {t.name: t for t in twins}
    writes: list[models.TwinWrite] = []
    for decision in guarded.decisions:
        if decision.postponed:
            continue
        name = names[decision.node]
        spec = twin_spec(decision, gpus=gpus.get(decision.node, 0), caps=caps)
        status = twin_status(decision, spec=spec, tick_time=guarded.tick_time)
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
    stamp = current.get(_STAMP)
    if not isinstance(stamp, str):
        return False
    try:
        written = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return False
    return 0 <= tick_time - written.timestamp() < STATUS_REFRESH_S


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


def _number(value: float) -> float | int:
    """Whole numbers as integers: the API server re-encodes them so anyway, and a
    comparison with what it returns must not see ``60.0`` and ``60`` as a change."""
    return int(value) if float(value).is_integer() else value
