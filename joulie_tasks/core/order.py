"""NODE_ORDER=density: the order the policy assigns profiles in, and the per-family
performance floor (docs/SPEC.md §13.10; NODETWIN.md §5.1-§5.3).

- **Density**: CPU density = the catalog's compute density (or boost GHz x TDP) x the
  core count (else sockets, else 1); GPU density = its compute density (or board power)
  x the GPU count; 0 for models the catalog does not know. Names are sorted by byte
  order, then stable-sorted by CPU + GPU density, densest first. The figures are the
  reference's, not normalised (a 192-core CPU outranks 8 GPUs, NODETWIN.md §10.10):
  they only order nodes, and the same figures keep the same order as the reference.
- **Family**: ``gpu:<model>`` for a node with GPUs, else ``cpu:<model>``.
- **Floor**: a policy that chooses a count of performance nodes gets at least one per
  family: ``hp = min(max(hp, families), N)``; then the densest node of each family is
  taken first, and the remaining slots are filled in density order.

With NODE_ORDER=name (the default) none of this runs: the seed's plan, unchanged.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from joulie_tasks.core import hardware, models


def cpu_density(hw: hardware.Hardware) -> float:
    """The CPU's compute density x its core count (else sockets, else 1); 0 unrecognised."""
    if hw.cpu is None:
        return 0.0
    base = hw.cpu.compute_density
    if base <= 0:
        base = hw.cpu.boost_ghz * hw.cpu.tdp_w
    multiplier = hw.total_cores if hw.total_cores > 0 else hw.sockets if hw.sockets > 0 else 1
    return base * multiplier


def gpu_density(hw: hardware.Hardware) -> float:
    """The GPU's compute density x the GPU count (at least 1); 0 unrecognised."""
    if hw.gpu is None:
        return 0.0
    base = hw.gpu.compute_density if hw.gpu.compute_density > 0 else hw.gpu.max_board_power_w
    return base * max(hw.gpu_count, 1)


def family(hw: hardware.Hardware) -> str:
    """``gpu:`` + model (catalog key, recorded, raw or ``unknown-gpu``) for a node with
    GPUs, else ``cpu:`` + model the same way (NODETWIN.md §5.2)."""
    if hw.gpu_count > 0:
        return "gpu:" + (hw.gpu_model or hw.gpu_raw_model or "unknown-gpu")
    return "cpu:" + (hw.cpu_model or hw.cpu_raw_model or "unknown-cpu")


@dataclass(frozen=True)
class Ranking:
    """What NODE_ORDER=density needs of each eligible node: its density and family.

    A node without an entry has density 0 and a family of its own (``unknown:<name>``).
    """

    density: Mapping[models.NodeName, float]
    families: Mapping[models.NodeName, str]

    def arrange(self, nodes: Sequence[models.NodeName]) -> list[models.NodeName]:
        """``nodes`` by byte order of their names, then densest first (stable)."""
        by_name = sorted(nodes, key=lambda n: n.encode("utf-8", "surrogatepass"))
        return sorted(by_name, key=lambda n: -self.density.get(n, 0.0))

    def family_of(self, node: models.NodeName) -> str:
        return self.families.get(node, f"unknown:{node}")


def rank(hw: Mapping[models.NodeName, hardware.Hardware]) -> Ranking:
    """The ranking of the planner's hardware view (hardware.planner_view)."""
    return Ranking(
        density={n: cpu_density(h) + gpu_density(h) for n, h in hw.items()},
        families={n: family(h) for n, h in hw.items()},
    )


def with_family_floor(
    ordered: Sequence[models.NodeName], *, hp_count: int, ranking: Ranking
) -> tuple[models.Profile, ...]:
    """Profiles for ``ordered`` with at least one performance node per family.

    Raises ``hp_count`` to the number of families (never above N), takes the first
    node of each family in order, then fills the remaining slots in order.
    """
    families = [ranking.family_of(n) for n in ordered]
    wanted = min(max(hp_count, len(set(families))), len(ordered))
    taken: set[int] = set()
    seen: set[str] = set()
    for i, fam in enumerate(families):
        if len(taken) >= wanted:
            break
        if fam not in seen:
            seen.add(fam)
            taken.add(i)
    for i in range(len(ordered)):
        if len(taken) >= wanted:
            break
        taken.add(i)
    return tuple(
        models.Profile.PERFORMANCE if i in taken else models.Profile.ECO
        for i in range(len(ordered))
    )
