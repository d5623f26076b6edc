"""The hardware catalog: CPU and GPU models the operator recognises (NODETWIN.md §2.3).

The reference's embedded ``pkg/hwinv/assets/hardware.yaml`` (catalog v1), restated as
data: the figures the operator uses (TDP, cTDP range, board power, compute density,
boost clock) and the aliases a NodeHardware or a node label may spell a model with.
The reference can also read a catalog file (``HARDWARE_CATALOG_PATH``); its default
path does not exist in its own image, so the embedded catalog is what runs, and the
only one we carry (docs/SPEC.md §13.10).

Matching normalises both sides (lower case; ``(r)``, ``®`` and ``™`` removed;
``( ) - _ / ,`` turned into spaces; whitespace collapsed) and compares the input with
each key and alias. An empty input never matches. Pure data and lookups, no I/O.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CpuModel:
    """One CPU entry: ``tdp_w`` per socket, the cTDP range (empty when none)."""

    key: str
    aliases: tuple[str, ...]
    tdp_w: float
    ctdp_range_w: tuple[float, ...]
    compute_density: float
    boost_ghz: float


@dataclass(frozen=True)
class GpuModel:
    """One GPU entry: the board power range of each GPU."""

    key: str
    aliases: tuple[str, ...]
    max_board_power_w: float
    min_board_power_w: float
    compute_density: float


CPU_MODELS: Sequence[CpuModel] = (
    CpuModel(
        "AMD_EPYC_9654",
        ("AMD EPYC 9654 96-Core Processor", "AMD EPYC 9654"),
        360,
        (320, 400),
        710.4,
        3.7,
    ),
    CpuModel(
        "AMD_EPYC_9655",
        ("AMD EPYC 9655 96-Core Processor", "AMD EPYC 9655"),
        400,
        (320, 400),
        1040.0,
        4.5,
    ),
    CpuModel(
        "AMD_EPYC_9965",
        ("AMD EPYC 9965 192-Core Processor", "AMD EPYC 9965"),
        500,
        (450, 500),
        1776.0,
        3.7,
    ),
    CpuModel(
        "AMD_EPYC_9534",
        ("AMD EPYC 9534 64-Core Processor", "AMD EPYC 9534"),
        280,
        (240, 300),
        473.6,
        3.7,
    ),
    CpuModel(
        "AMD_EPYC_9375F",
        ("AMD EPYC 9375F 32-Core Processor", "AMD EPYC 9375F"),
        320,
        (320, 400),
        486.4,
        4.8,
    ),
    CpuModel(
        "INTEL_XEON_GOLD_6530",
        ("INTEL(R) XEON(R) GOLD 6530", "INTEL XEON GOLD 6530", "Xeon Gold 6530"),
        270,
        (),
        256.0,
        4.0,
    ),
)

GPU_MODELS: Sequence[GpuModel] = (
    GpuModel("NVIDIA_H100_NVL", ("NVIDIA-H100-NVL", "NVIDIA H100 NVL", "H100 NVL"), 400, 200, 400),
    GpuModel(
        "NVIDIA_H100_SXM",
        ("NVIDIA-H100-80GB-HBM3", "NVIDIA H100 80GB HBM3", "H100 SXM"),
        700,
        350,
        700,
    ),
    GpuModel("NVIDIA_L40S", ("NVIDIA-L40S", "NVIDIA L40S", "L40S"), 350, 200, 350),
    GpuModel(
        "AMD_INSTINCT_MI300X",
        ("AMD_Instinct_MI300X", "AMD Instinct MI300X", "MI300X"),
        750,
        350,
        750,
    ),
    GpuModel(
        "AMD_RADEON_PRO_W7900",
        ("AMD_Radeon_PRO_W7900", "AMD Radeon PRO W7900", "W7900"),
        295,
        200,
        295,
    ),
)

_MARKS = re.compile(r"\(r\)|®|™")
_SEPARATORS = re.compile(r"[()\-_/,]")


def normalise(text: str) -> str:
    """The form both sides are compared in: ``INTEL(R) XEON(R) GOLD 6530``,
    ``Intel-Xeon-Gold-6530`` and ``INTEL_XEON_GOLD_6530`` all give
    ``intel xeon gold 6530``."""
    lowered = _MARKS.sub("", text.strip().lower())
    return " ".join(_SEPARATORS.sub(" ", lowered).split())


def _index(entries: Sequence[CpuModel] | Sequence[GpuModel]) -> dict[str, str]:
    index: dict[str, str] = {}
    for entry in entries:
        for name in (entry.key, *entry.aliases):
            index.setdefault(normalise(name), entry.key)  # first entry wins: deterministic
    return index


_CPUS: Mapping[str, CpuModel] = {c.key: c for c in CPU_MODELS}
_GPUS: Mapping[str, GpuModel] = {g.key: g for g in GPU_MODELS}
_CPU_INDEX = _index(CPU_MODELS)
_GPU_INDEX = _index(GPU_MODELS)


# Cached: a cluster has few distinct model strings and every tick matches every node's.
@functools.lru_cache(maxsize=1024)
def match_cpu(text: str) -> CpuModel | None:
    """The CPU entry whose key or an alias normalises like ``text``; None if none."""
    key = _CPU_INDEX.get(normalise(text)) if text.strip() else None
    return _CPUS[key] if key else None


@functools.lru_cache(maxsize=1024)
def match_gpu(text: str) -> GpuModel | None:
    """The GPU entry whose key or an alias normalises like ``text``; None if none."""
    key = _GPU_INDEX.get(normalise(text)) if text.strip() else None
    return _GPUS[key] if key else None
