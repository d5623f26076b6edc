"""Stage 3: demand classification from pod scheduling constraints (docs/SPEC.md §4).

Only the constant key ``joulie.io/power-profile`` counts (not POWER_PROFILE_LABEL).
A pod is performance-only as soon as any one constraint excludes eco — one entry in
any OR-ed affinity term is enough, which over-counts on purpose: over-counting keeps
a node in performance, under-counting could downgrade a node under sensitive work.
Unknown operators and empty value lists are ignored. Values are compared trimmed.

Pure: no I/O, no clock, no logging; pods come in as :class:`models.PodInfo`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from joulie_tasks.core import models

_PERFORMANCE = models.Profile.PERFORMANCE.value
_ECO = models.Profile.ECO.value
_FINISHED_PHASES = frozenset({"Succeeded", "Failed"})


def is_active(pod: models.PodInfo) -> bool:
    """Not being deleted and not finished; Pending pods count, bound or not."""
    return not pod.deleting and pod.phase not in _FINISHED_PHASES


def classify_pod(pod: models.PodInfo) -> models.DemandClass:
    """The pod's demand class; performance wins over eco wherever both appear.

    The ``joulie.io/workload-class`` annotation (docs/SPEC.md §13.5) is one more
    performance signal: exactly ``performance`` after trimming (case-sensitive). Any
    other value is ignored, and it can never make a pod eco-only.
    """
    if (pod.workload_class or "").strip() == _PERFORMANCE:
        return models.DemandClass.PERFORMANCE_ONLY
    selected = (pod.node_selector_profile or "").strip()
    # An empty value list constrains nothing: it is ignored.
    expressions = [
        (r.operator, {v.strip() for v in r.values}) for r in pod.requirements if r.values
    ]
    if selected == _PERFORMANCE or any(
        (op == "NotIn" and _ECO in values) or (op == "In" and _ECO not in values)
        for op, values in expressions
    ):
        return models.DemandClass.PERFORMANCE_ONLY
    if selected == _ECO or any(
        op == "In" and _ECO in values and _PERFORMANCE not in values for op, values in expressions
    ):
        return models.DemandClass.ECO_ONLY
    return models.DemandClass.GENERAL


def summarise_demand(pods: Sequence[models.PodInfo] | None) -> models.Demand:
    """Count active pods by class, and active performance-only pods per bound node.

    ``None`` (the pod list could not be read) gives ``Demand(known=False)``, which
    the guard treats as "unknown count on every node" and fails safe.
    """
    if pods is None:
        return models.Demand(known=False)
    classes: Counter[models.DemandClass] = Counter()
    by_node: Counter[models.NodeName] = Counter()
    for pod in pods:
        if not is_active(pod):
            continue
        demand_class = classify_pod(pod)
        classes[demand_class] += 1
        if demand_class is models.DemandClass.PERFORMANCE_ONLY and pod.node_name:
            by_node[pod.node_name] += 1
    return models.Demand(
        performance_pods=classes[models.DemandClass.PERFORMANCE_ONLY],
        eco_pods=classes[models.DemandClass.ECO_ONLY],
        general_pods=classes[models.DemandClass.GENERAL],
        performance_pods_by_node=dict(sorted(by_node.items())),
    )
