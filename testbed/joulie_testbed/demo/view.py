"""What the demo prints: one table per tick and the closing summary.

Why a module of its own: formatting is pure (records in, lines out), so it is easy
to read and to test apart from the processes. Transitions of the tick are
highlighted — bold and coloured on a terminal, a ``*`` marker and an arrow text
otherwise (pipes, CI logs, ``--no-color``) — so the highlight survives copying.
A ``+`` marks a state change the operator does not count as a transition: a
node's first label (from Unknown, docs/SPEC.md §6) or a node whose write failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from joulie_tasks.core import models
from joulie_tasks.ports import metrics

_RESET = "\033[0m"
_BOLD = "\033[1m"
_DIM = "\033[2m"
_COLOURS = {
    "ActivePerformance": "\033[31m",  # red: the power-hungry state
    "DrainingPerformance": "\033[33m",  # yellow: waiting for performance pods
    "ActiveEco": "\033[32m",  # green
}

HEADER = ("NODE", "STATE", "PROFILE", "DRAINING", "PERF PODS", "CAP (W)", "CHANGE THIS TICK")
#: The cap column in OUTPUT_API=nodetwin: the twin's cap in percent of max.
PCT_HEADER = (*HEADER[:5], "CAP (%)", HEADER[6])
_WIDTHS = (10, 20, 12, 9, 10, 8)


@dataclass(frozen=True)
class Style:
    """How to highlight: ANSI colours or plain text, and which arrow to use."""

    colour: bool
    arrow: str = "→"

    def paint(self, text: str, *codes: str) -> str:
        return f"{''.join(codes)}{text}{_RESET}" if self.colour and codes else text


@dataclass(frozen=True)
class TickView:
    """Everything shown for one tick."""

    number: int
    total: int
    tick: models.TickSummary
    fsm: Mapping[str, models.FsmRecord]
    caps: Mapping[str, float]
    """Each node's cap: the profile's watts, or (``caps_in_pct``) the twin's percent."""
    transitions: Sequence[models.TransitionEntry]
    excluded: Mapping[str, str]
    demand: int | None
    pending: int
    hp_count: int | None
    previous: Mapping[str, str]
    """Each node's state in the previous table (absent: not seen yet)."""
    caps_in_pct: bool = False


def tick_lines(view: TickView, style: Style) -> list[str]:
    """The tick's title, the table (eligible nodes, then the excluded ones) and a footer."""
    t = view.tick
    demand = "?" if view.demand is None else str(view.demand)
    target = "" if view.hp_count is None else f", policy wants {view.hp_count} performance"
    title = (
        f"tick {view.number}/{view.total}  {t.tick_id}  policy {t.policy}  "
        f"demand {demand} performance pods ({view.pending} pending){target}"
    )
    lines = ["", style.paint(title, _BOLD), _row(PCT_HEADER if view.caps_in_pct else HEADER, " ")]
    by_node: dict[str, list[models.TransitionEntry]] = {}
    for entry in view.transitions:
        by_node.setdefault(entry.node, []).append(entry)
    for node in sorted(view.fsm):
        lines.append(_node_line(node, view, by_node.get(node, []), style))
    for node, why in sorted(view.excluded.items()):
        lines.append(
            style.paint(_row((node, "-", "-", "-", "-", "-", f"not managed: {why}"), " "), _DIM)
        )
    lines.append(
        f"  {t.nodes} nodes planned, {t.writes_planned} writes planned, "
        f"{t.written} written, {t.retries} retries, {len(t.failures)} failed; "
        f"{t.applied} transitions applied, {t.deferred} deferred "
        f"({t.duration_s * 1000:.0f} ms)"
    )
    return lines


def _node_line(
    node: str, view: TickView, entries: Sequence[models.TransitionEntry], style: Style
) -> str:
    rec = view.fsm[node]
    state = rec.state.value
    pods = rec.performance_pods
    cap = view.caps.get(node)
    changes = []
    for e in entries:
        if e.result == models.TransitionResult.APPLIED:
            changes.append(f"{e.from_state.value} {style.arrow} {e.to_state.value}")
        else:  # the deferred downgrade the node is draining for
            changes.append(f"{e.to_state.value} deferred: {e.reason}")
    before = view.previous.get(node, "Unknown")
    if not entries and before != state:
        # Unknown → known is not a transition (docs/SPEC.md §6), but the reader should see it.
        note = " (first label, not counted as a transition)" if before == "Unknown" else ""
        changes.append(f"{before} {style.arrow} {state}{note}")
    if rec.last_error:
        changes.append(f"write failed: {rec.last_error}")
    cells = (
        node,
        state,
        rec.profile.value if rec.profile is not None else "-",
        "yes" if rec.draining else "no",
        "?" if pods is None else str(pods),
        "-" if cap is None else f"{cap:g}",
        "; ".join(changes),
    )
    marker = "*" if entries else "+" if changes else " "
    return _row(cells, marker, style, _COLOURS.get(state), bold=bool(entries))


def _row(
    cells: Sequence[str],
    marker: str,
    style: Style | None = None,
    state_colour: str | None = None,
    *,
    bold: bool = False,
) -> str:
    """Fixed-width cells, free-width last cell; colour codes wrap padded text only."""
    parts = [f"{c:<{w}}" for c, w in zip(cells, _WIDTHS, strict=False)]
    colour = style is not None and style.colour
    if colour and state_colour:
        parts[1] = f"{state_colour}{parts[1]}{_RESET}{_BOLD if bold else ''}"
    text = f"{marker} {' '.join(parts)} {cells[len(_WIDTHS)]}".rstrip()
    return f"{_BOLD}{text}{_RESET}" if colour and bold else text


@dataclass
class Totals:
    """Sums over the ticks the demo watched."""

    ticks: int = 0
    applied: int = 0
    deferred: int = 0
    written: int = 0
    retries: int = 0
    failed: int = 0

    def add(self, tick: models.TickSummary) -> None:
        self.ticks += 1
        self.applied += tick.applied
        self.deferred += tick.deferred
        self.written += tick.written
        self.retries += tick.retries
        self.failed += len(tick.failures)


def summary_line(totals: Totals, *, requested: int, interrupted: bool) -> str:
    """The one-line summary (``summary: …``), also printed after Ctrl-C."""
    head = f"summary: {totals.ticks} of {requested} ticks"
    if interrupted:
        head += " (interrupted)"
    return (
        f"{head}, {totals.applied} transitions applied, {totals.deferred} deferred, "
        f"{totals.written} writes, {totals.retries} retries, {totals.failed} failed writes"
    )


def counter_line(counters: Mapping[str, float], names: Mapping[str, str]) -> str:
    """Operator counters from Redis (all processes): ``name=value`` pairs by short name."""
    totals: dict[str, float] = {}
    for key, value in counters.items():
        name, _ = metrics.parse_field(key)
        if name in names:
            totals[names[name]] = totals.get(names[name], 0.0) + value
    parts = [f"{short} {totals.get(short, 0.0):g}" for short in names.values()]
    return "counters: " + ", ".join(parts)
