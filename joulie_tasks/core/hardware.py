"""NodeHardware as an input: parsing, the label fallback, and the figures derived from it
(docs/SPEC.md §13.10; NODETWIN.md §2.2 and §2.4).

The agent writes one NodeHardware per node; the operator only reads it. Two views are
built from the same records with the same catalog enrichment (catalog.py):

- the **planner view** (density order, hardware families, absolute caps): the node's
  NodeHardware, else a record taken from its labels and capacity (§2.4 A);
- the **twin view** (the NodeTwin status figures, twin_status.py): the node's
  NodeHardware only, as in the reference; a node without one has all-zero hardware.

Where the reference is wrong we are right on purpose (docs/SPEC.md §13.12): a record is
found by its ``spec.nodeName`` for both views (the reference's twin looks it up by the
raw node name while the agent names it with the sanitised one, so dotted names never
find theirs); whole and fractional numbers are read alike (the reference drops a RAPL
maximum of exactly 400 W); a CPU recognised in the catalog with an unknown socket count
counts one socket (the reference's TDP is then 0).

Pure: no I/O, no logging. Malformed fields count as absent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from joulie_tasks.core import catalog, models

#: The agent's per-core heuristic when nothing else gives a CPU's power (5 W; the
#: reference's comment says 10, its code uses 5).
WATTS_PER_CORE = 5.0

#: Node labels of the fallback record (NODETWIN.md §2.4 A), first non-blank wins.
CPU_MODEL_LABELS = ("joulie.io/hw.cpu-model", "feature.node.kubernetes.io/cpu-model.name")
CPU_SOCKETS_LABELS = ("joulie.io/hw.cpu-sockets", "feature.node.kubernetes.io/cpu-sockets")
GPU_MODEL_LABEL = "joulie.io/hw.gpu-model"
GPU_COUNT_LABEL = "joulie.io/hw.gpu-count"
#: GPU_PRODUCT_LABEL_KEYS' default: where device plugins publish the GPU product.
DEFAULT_GPU_PRODUCT_LABEL_KEYS = (
    "joulie.io/gpu.product",
    "nvidia.com/gpu.product",
    "amd.com/gpu.product",
    "amd.com/gpu.family",
)


@dataclass(frozen=True)
class Hardware:
    """A node's hardware after catalog enrichment: what the planner, the caps and the
    twin read. ``cpu``/``gpu`` are the catalog entries matched (None: unrecognised);
    ``cpu_model``/``gpu_model`` the catalog key when matched, else the recorded model."""

    cpu: catalog.CpuModel | None = None
    gpu: catalog.GpuModel | None = None
    cpu_model: str = ""
    cpu_raw_model: str = ""
    sockets: int = 0
    total_cores: int = 0
    cpu_min_w_per_socket: float = 0.0
    cpu_max_w_per_socket: float = 0.0
    #: Whether the CPU range is the one the agent read on the host (RAPL), not the
    #: catalog's or the per-core heuristic's.
    cpu_range_measured: bool = False
    gpu_model: str = ""
    gpu_raw_model: str = ""
    gpu_count: int = 0
    gpu_present: bool = False
    gpu_min_w: float = 0.0
    gpu_max_w: float = 0.0

    @property
    def cpu_tdp_w(self) -> float:
        """Per-package maximum x sockets; an unknown socket count counts one."""
        return (
            self.cpu_max_w_per_socket * max(self.sockets, 1) if self.cpu_max_w_per_socket else 0.0
        )

    @property
    def gpu_tdp_w(self) -> float:
        """Per-GPU maximum x count, only for GPUs the record says are present."""
        return self.gpu_max_w * self.gpu_count if self.gpu_present else 0.0


NO_HARDWARE = Hardware()


def hardware_info_from_manifest(obj: Mapping[str, object]) -> models.HardwareInfo | None:
    """A NodeHardware's figures; None without a usable ``spec.nodeName``."""
    node = _get(_get(obj, "spec"), "nodeName")
    if not isinstance(node, str) or not node:
        return None
    status = _get(obj, "status")
    cpu, gpu = _get(status, "cpu"), _get(status, "gpu")
    cpu_range, gpu_range = _get(cpu, "capRange"), _get(gpu, "capRangePerGpu")
    name = _get(_get(obj, "metadata"), "name")
    return models.HardwareInfo(
        node_name=node,
        name=name if isinstance(name, str) else "",
        cpu_model=_text(_get(cpu, "model")),
        cpu_raw_model=_text(_get(cpu, "rawModel")),
        sockets=_count(_get(cpu, "sockets")),
        total_cores=_count(_get(cpu, "totalCores")),
        cpu_min_w_per_socket=_watts(_get(cpu_range, "minWattsPerSocket")),
        cpu_max_w_per_socket=_watts(_get(cpu_range, "maxWattsPerSocket")),
        gpu_present=_get(gpu, "present") is True,
        gpu_model=_text(_get(gpu, "model")),
        gpu_raw_model=_text(_get(gpu, "rawModel")),
        gpu_count=_count(_get(gpu, "count")),
        gpu_min_w=_watts(_get(gpu_range, "minWatts")),
        gpu_max_w=_watts(_get(gpu_range, "maxWatts")),
    )


def from_labels(
    node: models.NodeInfo, *, product_label_keys: Sequence[str] = DEFAULT_GPU_PRODUCT_LABEL_KEYS
) -> models.HardwareInfo:
    """The record a node without NodeHardware gets from its labels, its CPU capacity
    and its allocatable GPUs (NODETWIN.md §2.4 A)."""
    labels = node.labels
    gpu_labels = _first(labels, (GPU_COUNT_LABEL,))
    label_gpus = int(gpu_labels) if gpu_labels.isdigit() else 0
    sockets = _first(labels, CPU_SOCKETS_LABELS)
    return models.HardwareInfo(
        node_name=node.name,
        cpu_raw_model=_first(labels, CPU_MODEL_LABELS),
        sockets=int(sockets) if sockets.isdigit() else 0,
        total_cores=node.cpu_cores,
        gpu_raw_model=_first(labels, (GPU_MODEL_LABEL, *product_label_keys)),
        gpu_count=label_gpus if label_gpus > 0 else node.gpus,
    )


def label_keys(product_label_keys: Iterable[str]) -> frozenset[str]:
    """Every node label the fallback record reads (the watch cache must keep them)."""
    return frozenset(
        {*CPU_MODEL_LABELS, *CPU_SOCKETS_LABELS, GPU_MODEL_LABEL, GPU_COUNT_LABEL}
        | set(product_label_keys)
    )


def enrich(record: models.HardwareInfo) -> Hardware:
    """Fill in from the catalog what the record leaves open (NODETWIN.md §2.4 B): a GPU
    without a power range takes the board power of its model (and counts as present);
    a CPU without a RAPL range takes its model's TDP and cTDP floor, else
    :data:`WATTS_PER_CORE` per core. Each model is matched by ``model``, then by
    ``rawModel``."""
    cpu = catalog.match_cpu(record.cpu_model) or catalog.match_cpu(record.cpu_raw_model)
    gpu = catalog.match_gpu(record.gpu_model) or catalog.match_gpu(record.gpu_raw_model)
    sockets = record.sockets
    cpu_min, cpu_max = record.cpu_min_w_per_socket, record.cpu_max_w_per_socket
    if cpu_max <= 0 and cpu is not None:
        cpu_max = cpu.tdp_w
        cpu_min = cpu.ctdp_range_w[0] if len(cpu.ctdp_range_w) >= 2 else cpu_min
    if cpu_max <= 0 and record.total_cores > 0:
        sockets = max(sockets, 1)
        cpu_max = (record.total_cores // sockets) * WATTS_PER_CORE
    gpu_min, gpu_max, present = record.gpu_min_w, record.gpu_max_w, record.gpu_present
    if record.gpu_count > 0 and gpu_max <= 0 and gpu is not None:
        gpu_max = gpu.max_board_power_w
        gpu_min = gpu.min_board_power_w if gpu.min_board_power_w > 0 else gpu_min
        present = True
    return Hardware(
        cpu=cpu,
        gpu=gpu,
        cpu_model=cpu.key if cpu else record.cpu_model.strip(),
        cpu_raw_model=record.cpu_raw_model.strip(),
        sockets=sockets,
        total_cores=record.total_cores,
        cpu_min_w_per_socket=cpu_min,
        cpu_max_w_per_socket=cpu_max,
        cpu_range_measured=record.cpu_max_w_per_socket > 0,
        gpu_model=gpu.key if gpu else record.gpu_model.strip(),
        gpu_raw_model=record.gpu_raw_model.strip(),
        gpu_count=record.gpu_count,
        gpu_present=present,
        gpu_min_w=gpu_min,
        gpu_max_w=gpu_max,
    )


def records_by_node(
    records: Iterable[models.HardwareInfo],
) -> dict[models.NodeName, models.HardwareInfo]:
    """NodeHardware by ``spec.nodeName``; of several for one node the last listed wins
    (list order is name order, so the choice is stable)."""
    return {models.NodeName(r.node_name): r for r in records}


def planner_view(
    nodes: Iterable[models.NodeInfo],
    *,
    records: Iterable[models.HardwareInfo],
    product_label_keys: Sequence[str] = DEFAULT_GPU_PRODUCT_LABEL_KEYS,
) -> dict[models.NodeName, Hardware]:
    """Each node's hardware for ordering, families and absolute caps: its NodeHardware,
    else its labels (a node with a NodeHardware never uses its labels)."""
    found = records_by_node(records)
    return {
        n.name: enrich(found.get(n.name) or from_labels(n, product_label_keys=product_label_keys))
        for n in nodes
    }


def twin_view(
    nodes: Iterable[models.NodeName], *, records: Iterable[models.HardwareInfo]
) -> dict[models.NodeName, Hardware]:
    """Each node's hardware for its twin status: its NodeHardware only, else none."""
    found = records_by_node(records)
    return {n: enrich(found[n]) if n in found else NO_HARDWARE for n in nodes}


def _get(obj: object, key: str) -> object:
    return obj.get(key) if isinstance(obj, Mapping) else None


def _text(obj: object) -> str:
    return obj.strip() if isinstance(obj, str) else ""


def _count(obj: object) -> int:
    number = _watts(obj)
    return int(number) if number > 0 and number.is_integer() else 0


def _watts(obj: object) -> float:
    if isinstance(obj, bool) or not isinstance(obj, int | float):
        return 0.0
    value = float(obj)
    return value if math.isfinite(value) and value > 0 else 0.0


def _first(labels: Mapping[str, str], keys: Iterable[str]) -> str:
    for key in keys:
        value = labels.get(key, "").strip()
        if value:
            return value
    return ""
