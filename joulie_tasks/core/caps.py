"""The caps a NodeTwin carries: CPU and GPU, in percent of max or in watts
(docs/SPEC.md §13.3 and §13.11; NODETWIN.md §6).

- **CPU, node without allocatable GPUs**: ``packagePowerCapPctOfMax`` by profile
  (CPU_PERFORMANCE/ECO_CAP_PCT_OF_MAX), or with CPU_WRITE_ABSOLUTE_CAPS
  ``packagePowerCapWatts``: the profile's watts (PERFORMANCE/ECO_CAP_WATTS) clamped to
  the package's RAPL range from NodeHardware, else to [55 % of TDP, TDP] of its catalog
  model, else as they are. The figure is **per package**, as the field's name and the
  agent (which writes it into every package's limit) read it; the reference multiplies
  the TDP by the socket count (NODETWIN.md §10.14), so a 2-socket node's eco cap of
  396 W is no cap at all on packages of 360 W.
- **CPU, node with allocatable GPUs**: no CPU cap (``cpu: {}``), whatever the settings:
  docs/SPEC.md D62 says why.
- **GPU**: a node with allocatable GPUs gets ``{scope: perGpu, capPctOfMax}`` by
  profile (none when that percentage is 0); with GPU_WRITE_ABSOLUTE_CAPS also
  ``capWattsPerGpu`` from, first found: the GPU's power range in NodeHardware, its
  catalog model's board power, GPU_MODEL_CAPS_JSON for the product named by the first
  of GPU_PRODUCT_LABEL_KEYS set on the node; else the percentage alone.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from joulie_tasks.core import hardware, models

#: The catalog floor of an absolute CPU cap, in parts of the TDP (the reference's 55 %).
CPU_FLOOR_OF_TDP = 0.55


@dataclass(frozen=True)
class GpuModelCap:
    """One GPU_MODEL_CAPS_JSON entry: the power-limit range of each GPU of a product."""

    max_cap_watts: float
    min_cap_watts: float = 0.0


def _by_profile(performance: float, eco: float) -> dict[models.Profile, float]:
    return {models.Profile.PERFORMANCE: performance, models.Profile.ECO: eco}


@dataclass(frozen=True)
class Caps:
    """The cap settings (docs/SPEC.md §3.2), defaults the reference chart's: CPU and GPU
    100/60 % of max, absolute modes off; a GPU percentage of 0 means no GPU intent."""

    cpu: Mapping[models.Profile, float] = field(default_factory=lambda: _by_profile(100.0, 60.0))
    gpu: Mapping[models.Profile, float] = field(default_factory=lambda: _by_profile(100.0, 60.0))
    cpu_absolute: bool = False
    gpu_absolute: bool = False
    gpu_model_caps: Mapping[str, GpuModelCap] = field(default_factory=dict)
    product_label_keys: Sequence[str] = hardware.DEFAULT_GPU_PRODUCT_LABEL_KEYS


def cpu_cap(
    profile: models.Profile,
    *,
    watts: float,
    gpus: int,
    hw: hardware.Hardware,
    caps: Caps,
) -> dict[str, object]:
    """The ``spec.cpu`` of a node: ``{}`` on GPU nodes, else a percentage or watts."""
    if gpus > 0:
        return {}
    if not caps.cpu_absolute:
        return {"packagePowerCapPctOfMax": number(caps.cpu[profile])}
    target = watts
    if hw.cpu_range_measured:
        target = min(max(target, hw.cpu_min_w_per_socket), hw.cpu_max_w_per_socket)
    elif hw.cpu is not None:
        tdp = hw.cpu.tdp_w
        target = max(min(target, tdp), CPU_FLOOR_OF_TDP * tdp)
    return {"packagePowerCapWatts": number(target)} if target > 0 else {}


def gpu_cap(
    profile: models.Profile,
    *,
    gpus: int,
    hw: hardware.Hardware | None,
    labels: Mapping[str, str],
    caps: Caps,
) -> dict[str, object] | None:
    """The ``spec.gpu.powerCap`` of a node, or None (no allocatable GPU, or 0 %)."""
    pct = caps.gpu[profile]
    if gpus <= 0 or pct <= 0:
        return None
    intent: dict[str, object] = {"scope": "perGpu", "capPctOfMax": number(pct)}
    if caps.gpu_absolute:
        per_gpu = _gpu_watts(pct, hw=hw, labels=labels, caps=caps)
        if per_gpu is not None:
            intent["capWattsPerGpu"] = number(per_gpu)
    return intent


def _gpu_watts(
    pct: float, *, hw: hardware.Hardware | None, labels: Mapping[str, str], caps: Caps
) -> float | None:
    if hw is not None and hw.gpu_max_w > 0:
        # the range the agent read on the device, or its model's board power (filled in
        # by hardware.enrich); the reference's known-range path read fields the CRD
        # lacks and never ran (NODETWIN.md §10.3)
        low = hw.gpu_min_w if hw.gpu_min_w > 0 else 0.0
        return min(max(pct / 100 * hw.gpu_max_w, low), hw.gpu_max_w)
    if hw is not None and hw.gpu is not None:
        high = hw.gpu.max_board_power_w
        low = hw.gpu.min_board_power_w if hw.gpu.min_board_power_w > 0 else 0.5 * high
        return min(max(pct / 100 * high, low), high)
    keys = caps.product_label_keys
    product = next((labels[k].strip() for k in keys if labels.get(k, "").strip()), "")
    entry = caps.gpu_model_caps.get(product)
    if entry is None or entry.max_cap_watts <= 0:
        return None
    low = entry.min_cap_watts if entry.min_cap_watts > 0 else 1.0
    return min(max(pct / 100 * entry.max_cap_watts, low), entry.max_cap_watts)


def number(value: float) -> float | int:
    """Whole numbers as integers: the API server re-encodes them so anyway, and a
    comparison with what it returns must not see ``60.0`` and ``60`` as a change."""
    return int(value) if float(value).is_integer() else value
