"""Extraction of the facts the operator needs from raw API objects (docs/SPEC.md §2, §4, §7).

Input is a JSON dict as the API server returns it (camelCase keys); output is a
:mod:`models` value. These functions never raise on malformed input: a field of the
wrong type counts as absent, and :func:`pod_info_with_problems` reports what it
dropped so the caller can log it. An object without a usable name yields ``None``
(nodes, profiles); a pod is kept whenever it is an object at all, because dropping a
pod could hide performance demand and lead to a downgrade.

Also :func:`select_eligible` (docs/SPEC.md §2 step 2). Pure: no I/O, no logging.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from joulie_tasks.core import models, selectors

_AFFINITY_PATH = (
    "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
)


def node_info_from_manifest(obj: Mapping[str, object]) -> models.NodeInfo | None:
    """A Node's name, string labels (others dropped) and ``spec.unschedulable``."""
    metadata = _mapping(_get(obj, "metadata"))
    name = _get(metadata, "name")
    if not isinstance(name, str) or not name:
        return None
    labels = _string_map(_get(metadata, "labels"))
    return models.NodeInfo(
        name=models.NodeName(name),
        labels=labels,
        unschedulable=_get(_mapping(_get(obj, "spec")), "unschedulable") is True,
        resource_version=_string(_get(metadata, "resourceVersion")),
        gpus=gpu_count(_mapping(_get(_mapping(_get(obj, "status")), "allocatable"))),
        cpu_cores=cpu_cores(_get(_mapping(_get(_mapping(_get(obj, "status")), "capacity")), "cpu")),
    )


def cpu_cores(quantity: object) -> int:
    """``status.capacity.cpu`` rounded up to whole cores (``96500m`` → 97); 0 when
    absent or not a plain or milli quantity."""
    text = str(quantity).strip() if isinstance(quantity, str | int) else ""
    milli = text.endswith("m")
    digits = text[:-1] if milli else text
    try:
        value = float(digits) / (1000 if milli else 1)
    except ValueError:
        return 0
    return math.ceil(value) if math.isfinite(value) and value > 0 else 0


_GPU_RESOURCES = frozenset({"nvidia.com/gpu", "amd.com/gpu", "gpu.intel.com/i915"})


def gpu_count(allocatable: Mapping[str, object]) -> int:
    """Allocatable GPUs as the newest reference counts them (NODETWIN.md §6.2): the sum
    over ``nvidia.com/gpu``, ``amd.com/gpu``, ``gpu.intel.com/i915`` and any resource
    ending in ``/gpu`` (lower-cased; ``example.com/gpu-mem`` does not count). GPU
    quantities are whole numbers; any other quantity counts as 0."""
    total = 0
    for name, quantity in allocatable.items():
        key = name.lower()
        if key in _GPU_RESOURCES or key.endswith("/gpu"):
            text = str(quantity).strip() if isinstance(quantity, str | int) else ""
            total += int(text) if text.isdigit() else 0
    return total


def pod_info_from_manifest(obj: Mapping[str, object]) -> models.PodInfo | None:
    """:func:`pod_info_with_problems` without the problem list."""
    return pod_info_with_problems(obj)[0]


def pod_info_with_problems(
    obj: Mapping[str, object],
) -> tuple[models.PodInfo | None, tuple[str, ...]]:
    """A pod's scheduling facts, plus a description of every malformed part dropped.

    Only the profile key (``joulie.io/power-profile``) is kept from the nodeSelector
    and from the required node-affinity match expressions of every term.
    """
    if not isinstance(obj, Mapping):
        return None, ("pod is not an object",)
    problems: list[str] = []
    metadata = _mapping(_get(obj, "metadata"))
    spec = _get(obj, "spec")
    if not isinstance(spec, Mapping):
        problems.append("spec is missing or not an object")
        spec = {}
    selector_profile = _get(_mapping(_get(spec, "nodeSelector")), models.PROFILE_CONSTRAINT_KEY)
    if selector_profile is not None and not isinstance(selector_profile, str):
        problems.append("spec.nodeSelector value for the profile key is not a string")
        selector_profile = None
    pod = models.PodInfo(
        namespace=_string(_get(metadata, "namespace")) or "",
        name=_string(_get(metadata, "name")) or "",
        node_name=_node_name(_get(spec, "nodeName")),
        phase=_string(_get(_mapping(_get(obj, "status")), "phase")),
        deleting=_get(metadata, "deletionTimestamp") is not None,
        node_selector_profile=selector_profile,
        requirements=_requirements(spec, problems),
        workload_class=_string(
            _get(_mapping(_get(metadata, "annotations")), models.WORKLOAD_CLASS_ANNOTATION)
        ),
    )
    return pod, tuple(problems)


def npp_info_from_manifest(obj: Mapping[str, object]) -> models.NppInfo | None:
    """An existing NodePowerProfile's name, resource version, spec and owner label."""
    metadata = _mapping(_get(obj, "metadata"))
    name = _get(metadata, "name")
    if not isinstance(name, str) or not name:
        return None
    spec = _mapping(_get(obj, "spec"))
    cap = _get(_mapping(_get(spec, "cpu")), "packagePowerCapWatts")
    return models.NppInfo(
        name=models.NppName(name),
        resource_version=_string(_get(metadata, "resourceVersion")),
        node_name=_string(_get(spec, "nodeName")),
        profile=_string(_get(spec, "profile")),
        cap_watts=_number(cap),
        policy_name=_string(_get(_mapping(_get(spec, "policy")), "name")),
        managed_by=_string(_get(_mapping(_get(metadata, "labels")), models.MANAGED_BY_LABEL)),
    )


def twin_info_from_manifest(obj: Mapping[str, object]) -> models.TwinInfo | None:
    """An existing NodeTwin's name, resource version, owner label, spec and status."""
    metadata = _mapping(_get(obj, "metadata"))
    name = _get(metadata, "name")
    if not isinstance(name, str) or not name:
        return None
    spec = _mapping(_get(obj, "spec"))
    return models.TwinInfo(
        name=name,
        resource_version=_string(_get(metadata, "resourceVersion")),
        node_name=_string(_get(spec, "nodeName")),
        managed_by=_string(_get(_mapping(_get(metadata, "labels")), models.MANAGED_BY_LABEL)),
        spec=dict(spec),
        status=dict(_mapping(_get(obj, "status"))),
    )


def select_eligible(
    nodes: Sequence[models.NodeInfo],
    *,
    selector: selectors.LabelSelector,
    reserved_label_key: str,
) -> tuple[models.NodeInfo, ...]:
    """The managed nodes (docs/SPEC.md §2 step 2), sorted by name in byte order.

    A node is eligible when its labels match ``selector``, it is schedulable and
    its ``reserved_label_key`` label is not exactly ``"true"``.
    """
    eligible = [
        node
        for node in nodes
        if selectors.matches(selector, node.labels)
        and not node.unschedulable
        and node.labels.get(reserved_label_key) != "true"
    ]
    return tuple(sorted(eligible, key=lambda n: n.name.encode("utf-8", "surrogatepass")))


def _requirements(
    spec: Mapping[str, object], problems: list[str]
) -> tuple[models.Requirement, ...]:
    node_affinity = _get(_mapping(_get(spec, "affinity")), "nodeAffinity")
    required = _get(_mapping(node_affinity), "requiredDuringSchedulingIgnoredDuringExecution")
    terms = _get(_mapping(required), "nodeSelectorTerms")
    if terms is None:
        return ()
    if not isinstance(terms, list):
        problems.append(f"{_AFFINITY_PATH} is not a list")
        return ()
    found: list[models.Requirement] = []
    for t, term in enumerate(terms):
        where = f"{_AFFINITY_PATH}[{t}]"
        expressions = _get(_mapping(term), "matchExpressions")
        if not isinstance(term, Mapping) or not isinstance(expressions, list | None):
            problems.append(f"{where} is not an object with a matchExpressions list")
            continue
        for e, entry in enumerate(expressions or ()):
            requirement = _requirement(entry, f"{where}.matchExpressions[{e}]", problems)
            if requirement is not None:
                found.append(requirement)
    return tuple(found)


def _requirement(entry: object, where: str, problems: list[str]) -> models.Requirement | None:
    if not isinstance(entry, Mapping):
        problems.append(f"{where} is not an object")
        return None
    if entry.get("key") != models.PROFILE_CONSTRAINT_KEY:
        return None
    operator = entry.get("operator")
    if not isinstance(operator, str):
        problems.append(f"{where}.operator is not a string; entry ignored")
        return None
    values = entry.get("values")
    if values is None:
        values = []
    if not isinstance(values, list):
        problems.append(f"{where}.values is not a list; treated as empty")
        values = []
    kept = tuple(v for v in values if isinstance(v, str))
    if len(kept) != len(values):
        problems.append(f"{where}.values has non-string items; they are ignored")
    return models.Requirement(operator=operator, values=kept)


def _get(obj: object, key: str) -> object:
    return obj.get(key) if isinstance(obj, Mapping) else None


def _mapping(obj: object) -> Mapping[str, object]:
    return obj if isinstance(obj, Mapping) else {}


def _string(obj: object) -> str | None:
    return obj if isinstance(obj, str) else None


def _string_map(obj: object) -> dict[str, str]:
    if not isinstance(obj, Mapping):
        return {}
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, str)}


def _number(obj: object) -> float | None:
    if isinstance(obj, bool) or not isinstance(obj, int | float):
        return None
    value = float(obj)
    return value if math.isfinite(value) else None


def _node_name(obj: object) -> models.NodeName | None:
    return models.NodeName(obj) if isinstance(obj, str) and obj else None
