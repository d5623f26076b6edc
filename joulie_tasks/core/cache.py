"""What the watch-fed cluster cache keeps of each object, and how it becomes a tick's input.

Pure: no I/O. The watcher (watcher.py) reduces every watched object to a compact
record here, cache_store.py keeps the records and the counts in Redis, and the
snapshot stage turns them back into a :class:`models.Snapshot` (nodes, profiles and,
when OUTPUT_API writes them, NodeTwins) plus a :class:`models.Demand` — the same ones
a list-fed tick computes, because the reduction uses the very functions the list
path uses (snapshot_parse, classify).

A pod is reduced to its *contribution*: nothing (unconstrained, finished, being
deleted) or one code, ``P|<node>`` (performance-only; empty node while pending),
``E`` (eco-only) or ``G`` (constrained but general). An event for a pod replaces
its old contribution by the new one, so the counts change by exactly what the
pod touched: O(1) per event whatever the cluster size.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from joulie_tasks.core import classify, hardware, models, selectors, snapshot_parse

PERFORMANCE, ECO, GENERAL = "P", "E", "G"


class Unusable(StrEnum):
    """Why a tick cannot use the cache and lists instead (the ``reason`` label of
    joulie_cache_fallbacks_total)."""

    ABSENT = "absent"  # no watcher has written it
    NOT_SYNCED = "not_synced"  # a resource has not been listed since the lease changed
    STALE = "stale"  # no heartbeat within CACHE_MAX_AGE
    UNREADABLE = "unreadable"  # Redis failed, or a record did not parse


#: Demand hash fields (cluster-wide counts).
DEMAND_FIELDS = ("performance", "eco", "general", "pending_performance")
_CLASS_CODE = {
    models.DemandClass.PERFORMANCE_ONLY: PERFORMANCE,
    models.DemandClass.ECO_ONLY: ECO,
    models.DemandClass.GENERAL: GENERAL,
}


def pod_key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    return f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"


def pod_contribution(obj: Mapping[str, Any]) -> str:
    """The pod's code (see the module docstring); ``""`` when it counts for nothing.

    Same decision as a list-fed tick: only pods constraining the profile key or
    carrying the workload-class annotation are kept (snapshot.py), only active ones
    count and the class is classify.py's.
    """
    pod, _problems = snapshot_parse.pod_info_with_problems(obj)
    if pod is None or not pod.has_power_signal():
        return ""
    if not classify.is_active(pod):
        return ""
    code = _CLASS_CODE[classify.classify_pod(pod)]
    if code == PERFORMANCE:
        return f"{PERFORMANCE}|{pod.node_name or ''}"
    return code


def interest_keys(
    selector: selectors.LabelSelector, *, reserved_label_key: str, profile_label: str,
    draining_label: str, extra: Iterable[str] = (),
) -> frozenset[str]:  # fmt: skip
    """The node labels a tick looks at: the selector's keys, reserved, profile, draining,
    and ``extra`` (the hardware labels, when NodeHardware is read: hardware.label_keys)."""
    keys = {r.key for r in selector.requirements}
    return frozenset(keys | {reserved_label_key, profile_label, draining_label, *extra})


def node_record(obj: Mapping[str, Any], keys: frozenset[str]) -> models.NodeInfo | None:
    """The node as the cache keeps it: only the labels of interest, and no
    resourceVersion (a status heartbeat must not look like a change)."""
    node = snapshot_parse.node_info_from_manifest(obj)
    if node is None:
        return None
    labels = {k: v for k, v in node.labels.items() if k in keys}
    return node.model_copy(update={"labels": labels, "resource_version": None})


def npp_record(obj: Mapping[str, Any]) -> models.NppInfo | None:
    return snapshot_parse.npp_info_from_manifest(obj)


def twin_record(obj: Mapping[str, Any]) -> models.TwinInfo | None:
    """The twin as the cache keeps it: whole spec and status with its resourceVersion,
    exactly what a list-fed tick reads (the writer diffs against both and replaces
    at that version)."""
    return snapshot_parse.twin_info_from_manifest(obj)


def hardware_record(obj: Mapping[str, Any]) -> models.HardwareInfo | None:
    """A NodeHardware's figures, exactly what a list-fed tick reads."""
    return hardware.hardware_info_from_manifest(obj)


def demand_from_counts(counts: Mapping[str, int], by_node: Mapping[str, int]) -> models.Demand:
    """The Demand a list-fed classify would compute from the same pods."""
    return models.Demand(
        performance_pods=int(counts.get("performance", 0)),
        eco_pods=int(counts.get("eco", 0)),
        general_pods=int(counts.get("general", 0)),
        performance_pods_by_node={
            models.NodeName(n): int(c) for n, c in sorted(by_node.items()) if int(c) > 0
        },
    )


def counts_of(codes: Iterable[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Cluster-wide counts and performance pods per node for a set of pod codes (relist)."""
    counts = dict.fromkeys(DEMAND_FIELDS, 0)
    by_node: dict[str, int] = {}
    for code in codes:
        if not code:
            continue
        if code[0] == PERFORMANCE:
            counts["performance"] += 1
            node = code[2:]
            if node:
                by_node[node] = by_node.get(node, 0) + 1
            else:
                counts["pending_performance"] += 1
        elif code == ECO:
            counts["eco"] += 1
        else:
            counts["general"] += 1
    return counts, by_node


def snapshot_from_records(
    *,
    tick_time: float,
    nodes: Iterable[models.NodeInfo],
    profiles: Iterable[models.NppInfo],
    twins: Iterable[models.TwinInfo] = (),
    hardware: Iterable[models.HardwareInfo] = (),
) -> models.Snapshot:
    """A Snapshot without pods (the demand comes precomputed), in the API's name order."""
    return models.Snapshot(
        tick_time=tick_time,
        nodes=tuple(sorted(nodes, key=lambda n: _name_order(n.name))),
        pods=(),
        profiles=tuple(sorted(profiles, key=lambda p: _name_order(p.name))),
        twins=tuple(sorted(twins, key=lambda t: _name_order(t.name))),
        hardware=tuple(sorted(hardware, key=lambda h: _name_order(h.name))),
    )


def _name_order(name: str) -> bytes:
    return name.encode("utf-8", "surrogatepass")
