"""The NodeTwin status figures (docs/SPEC.md §13.4; NODETWIN.md §7, the reference's
``twin.Compute``).

From a node's hardware (hardware.twin_view), its decided profile and the written cap
percentages: the TDPs, the capped power budgets, the headroom, cooling and PSU stress
scores, the PUE estimate and the hardware density score. Measured power, its trend,
the ambient temperature and facility or rack power are inputs too, so that every
formula is the reference's and can be tested as such; the operator has no power
source or facility poller (docs/SPEC.md §13.4 lists why), so it passes 0 for all of
them, which is the reference's default ``static`` source.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from joulie_tasks.core import hardware

#: Reference figures of the scores (NODETWIN.md §7.6-§7.9).
PSU_REFERENCE_W = 50_000.0
DENSITY_CORES = 192.0
DENSITY_GPUS = 8.0
PUE_BASE = 1.05
PUE_SPAN = 0.35


@dataclass(frozen=True)
class Conditions:
    """What a power source and the facility poller would tell (0: unknown)."""

    measured_w: float = 0.0
    trend_w_per_min: float = 0.0
    ambient_c: float = 0.0
    facility_it_power_w: float = 0.0
    rack_power_w: float = 0.0
    source: str = "static"


NO_CONDITIONS = Conditions()


def schedulable_class(profile: str, *, draining: bool) -> str:
    """``draining`` while draining, else the profile when it is one, else ``unknown``."""
    if draining:
        return "draining"
    return profile if profile in ("performance", "eco") else "unknown"


def compute(
    hw: hardware.Hardware,
    *,
    profile: str,
    draining: bool,
    cpu_pct: float,
    gpu_pct: float,
    conditions: Conditions = NO_CONDITIONS,
) -> dict[str, object]:
    """The operator-owned status fields but ``lastUpdated`` (NODETWIN.md §7.1-§7.11).

    A percentage ≤ 0 counts as 100 (no cap). The headroom has no lower bound: a node
    drawing more than its budget scores below 0, as in the reference.
    """
    cpu_pct = cpu_pct if cpu_pct > 0 else 100.0
    gpu_pct = gpu_pct if gpu_pct > 0 else 100.0
    cpu_tdp, gpu_tdp = hw.cpu_tdp_w, hw.gpu_tdp_w
    node_tdp = cpu_tdp + gpu_tdp
    cpu_capped = cpu_tdp * cpu_pct / 100
    gpu_capped = gpu_tdp * gpu_pct / 100
    node_capped = cpu_capped + gpu_capped
    measured = conditions.measured_w
    headroom = (
        100.0 if node_capped <= 0 else min(100.0, (node_capped - measured) / node_capped * 100)
    )
    cooling = _cooling(measured, node_tdp=node_tdp, ambient_c=conditions.ambient_c)
    return {
        "schedulableClass": schedulable_class(profile, draining=draining),
        "predictedPowerHeadroomScore": _num(headroom),
        "predictedCoolingStressScore": _num(cooling),
        "predictedPsuStressScore": _num(_psu(conditions)),
        "hardwareDensityScore": _num(_density(hw)),
        "estimatedPUE": _num(PUE_BASE + cooling / 100 * PUE_SPAN),
        "effectiveCapState": {"cpuPct": _num(cpu_pct), "gpuPct": _num(gpu_pct)},
        "powerMeasurement": {
            "source": conditions.source,
            "measuredNodePowerW": _num(measured),
            "cpuCappedPowerW": _num(cpu_capped),
            "gpuCappedPowerW": _num(gpu_capped),
            "nodeCappedPowerW": _num(node_capped),
            "cpuTdpW": _num(cpu_tdp),
            "gpuTdpW": _num(gpu_tdp),
            "nodeTdpW": _num(node_tdp),
            "powerTrendWPerMin": _num(conditions.trend_w_per_min),
        },
    }


def _cooling(measured: float, *, node_tdp: float, ambient_c: float) -> float:
    """Measured over TDP, weighted by the ambient temperature (1 when unknown, 2 from
    45 °C), within [0, 100]."""
    if node_tdp <= 0:
        return 0.0
    factor = 1.0 if ambient_c <= 0 else 1 / max(0.5, 1 - (ambient_c - 20) * 0.02)
    return _clamp(measured / node_tdp * factor * 100)


def _psu(conditions: Conditions) -> float:
    power = (
        conditions.rack_power_w if conditions.rack_power_w > 0 else conditions.facility_it_power_w
    )
    return 0.0 if power <= 0 else _clamp(power / PSU_REFERENCE_W * 100)


def _density(hw: hardware.Hardware) -> float:
    cpu = hw.total_cores / DENSITY_CORES * 100
    score = (cpu + hw.gpu_count / DENSITY_GPUS * 100) / 2 if hw.gpu_present else cpu
    return _clamp(score)


def _clamp(value: float) -> float:
    return max(0.0, min(value, 100.0))


def _num(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value
