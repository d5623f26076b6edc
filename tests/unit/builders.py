"""Builders for the pure-core unit tests: nodes, pods, profile objects, raw manifests.

Labels default to the docs/SPEC.md §3 names; pass ``profile=``/``draining=`` to give a node
its current operator labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from joulie_tasks.core import models

PROFILE_LABEL = "joulie.io/power-profile"
DRAINING_LABEL = "joulie.io/draining"
MANAGED = {"joulie.io/managed": "true"}
TICK = 1_700_000_000.0
PERF_CAP = 5000.0
ECO_CAP = 120.0


def make_node(
    name: str,
    *,
    labels: Mapping[str, str] | None = None,
    profile: str | None = None,
    draining: str | None = None,
    unschedulable: bool = False,
    managed: bool = True,
) -> models.NodeInfo:
    all_labels = dict(MANAGED) if managed else {}
    all_labels.update(labels or {})
    if profile is not None:
        all_labels[PROFILE_LABEL] = profile
    if draining is not None:
        all_labels[DRAINING_LABEL] = draining
    return models.NodeInfo(
        name=models.NodeName(name), labels=all_labels, unschedulable=unschedulable
    )


def make_pod(
    name: str = "p",
    *,
    node: str | None = None,
    phase: str | None = "Running",
    deleting: bool = False,
    selector: str | None = None,
    requirements: Sequence[tuple[str, Sequence[str]]] = (),
) -> models.PodInfo:
    return models.PodInfo(
        namespace="default",
        name=name,
        node_name=models.NodeName(node) if node else None,
        phase=phase,
        deleting=deleting,
        node_selector_profile=selector,
        requirements=tuple(
            models.Requirement(operator=op, values=tuple(v)) for op, v in requirements
        ),
    )


def perf_pod(name: str = "perf", *, node: str | None = None) -> models.PodInfo:
    return make_pod(name, node=node, selector="performance")


def make_npp(
    node: str,
    *,
    name: str | None = None,
    profile: str = "performance",
    cap: float = PERF_CAP,
    policy: str = "static-partition-v1",
    managed_by: str | None = models.MANAGED_BY_VALUE,
    resource_version: str | None = "7",
) -> models.NppInfo:
    return models.NppInfo(
        name=models.NppName(name or f"node-{node}"),
        resource_version=resource_version,
        node_name=node,
        profile=profile,
        cap_watts=cap,
        policy_name=policy,
        managed_by=managed_by,
    )


def make_params(**overrides: object) -> models.PolicyParams:
    return models.PolicyParams.model_validate(overrides)


def pod_manifest(
    *,
    spec: object = None,
    metadata: object = None,
    status: object = None,
) -> dict[str, object]:
    """A raw pod as the API returns it; ``None`` parts are left out."""
    obj: dict[str, object] = {"apiVersion": "v1", "kind": "Pod"}
    obj["metadata"] = {"name": "p", "namespace": "default"} if metadata is None else metadata
    if spec is not None:
        obj["spec"] = spec
    if status is not None:
        obj["status"] = status
    return obj


def affinity(*terms: object) -> dict[str, object]:
    """A pod spec whose required node affinity has these nodeSelectorTerms."""
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}
            }
        }
    }


def term(*expressions: object) -> dict[str, object]:
    return {"matchExpressions": list(expressions)}


def expr(operator: object, values: object = None, key: object = PROFILE_LABEL) -> dict[str, object]:
    entry: dict[str, object] = {"key": key, "operator": operator}
    if values is not None:
        entry["values"] = values
    return entry


def apply_guard(
    planned: models.Plan,
    *,
    nodes: Sequence[models.NodeInfo],
    demand: models.Demand,
    tick_time: float = TICK,
    performance_cap_watts: float = PERF_CAP,
) -> models.GuardedPlan:
    """The guard over ``planned``, with the SPEC §3 label names."""
    from joulie_tasks.core import guard

    return guard.apply_guard(
        planned,
        nodes=nodes,
        demand=demand,
        profile_label=PROFILE_LABEL,
        draining_label=DRAINING_LABEL,
        tick_time=tick_time,
        performance_cap_watts=performance_cap_watts,
    )


def run_core(
    nodes: Sequence[models.NodeInfo],
    *,
    pods: Sequence[models.PodInfo] | None = (),
    profiles: Sequence[models.NppInfo] = (),
    params: models.PolicyParams | None = None,
    tick_time: float = TICK,
) -> models.WriteSet:
    """One tick of the pure core: select → classify → plan → guard → diff."""
    from joulie_tasks.core import classify, plan, selectors, snapshot_parse, write

    params = params or make_params()
    eligible = snapshot_parse.select_eligible(
        nodes,
        selector=selectors.parse_selector("joulie.io/managed=true"),
        reserved_label_key="joulie.io/reserved",
    )
    demand = classify.summarise_demand(pods)
    planned = plan.make_plan(
        [n.name for n in eligible], demand=demand, params=params, tick_time=tick_time
    )
    guarded = apply_guard(
        planned,
        nodes=nodes,
        demand=demand,
        tick_time=tick_time,
        performance_cap_watts=params.performance_cap_watts,
    )
    return write.desired_writes(
        guarded,
        nodes=nodes,
        profiles=profiles,
        profile_label=PROFILE_LABEL,
        draining_label=DRAINING_LABEL,
    )
