"""The demo's chart: performance nodes against performance-pod demand, drawn with matplotlib.

One PNG per run: step lines per tick for the nodes in ActivePerformance and the
performance-pod demand (right axis, scaled so ``pods_per_node`` pods sit at one node),
a shaded band for the nodes still draining, axes, labels and a legend. The Agg
backend draws without a display; the figure is written atomically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display, no GUI toolkit

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

WIDTH_IN, HEIGHT_IN, DPI = 8.2, 4.6, 100  # 820 x 460 pixels

PERF = "#d62728"
DRAIN = "#fdd0a2"
DEMAND = "#1f77b4"


@dataclass(frozen=True)
class ChartData:
    """One value per tick: nodes in ActivePerformance / DrainingPerformance, perf-pod demand."""

    performance_nodes: Sequence[int]
    draining_nodes: Sequence[int]
    demand_pods: Sequence[int]
    managed_nodes: int
    pods_per_node: int
    title: str


def write_chart(path: Path, data: ChartData) -> Path:
    """Draw ``data`` and write it to ``path`` as a PNG (atomically); returns the path."""
    per_node = max(1, data.pods_per_node)
    ticks = list(range(1, len(data.performance_nodes) + 1))
    edges = [t - 0.5 for t in ticks] + [len(ticks) + 0.5]
    peak = max([data.managed_nodes, 1, *(math.ceil(p / per_node) for p in data.demand_pods)])

    fig, nodes_ax = plt.subplots(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    try:
        perf = list(data.performance_nodes)
        with_drain = [p + d for p, d in zip(perf, data.draining_nodes, strict=True)]
        nodes_ax.stairs(
            with_drain, edges, baseline=perf, fill=True, color=DRAIN,
            label="+ draining (eco, perf pods left)",
        )  # fmt: skip
        nodes_ax.stairs(perf, edges, color=PERF, linewidth=2.5, label="performance nodes")
        nodes_ax.stairs(
            [p / per_node for p in data.demand_pods], edges, color=DEMAND, linewidth=2.5,
            label=f"perf-pod demand (right axis, {per_node} pods = 1 node)",
        )  # fmt: skip
        nodes_ax.set_xlim(edges[0], edges[-1])
        nodes_ax.set_ylim(0, peak * 1.05)
        nodes_ax.set_xticks(ticks)
        nodes_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        nodes_ax.set_xlabel("tick")
        nodes_ax.set_ylabel("nodes")
        nodes_ax.grid(axis="y", color="#e1e1e1")
        pods_ax = nodes_ax.twinx()  # same scale, counted in pods
        pods_ax.set_ylim(0, peak * 1.05 * per_node)
        pods_ax.set_ylabel("performance pods", color=DEMAND)
        pods_ax.tick_params(axis="y", colors=DEMAND)
        nodes_ax.set_title(data.title)
        fig.legend(loc="lower center", ncols=3, fontsize="small", frameon=False)
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fig.savefig(tmp, format="png", dpi=DPI)
        tmp.replace(path)
    finally:
        plt.close(fig)
    return path
