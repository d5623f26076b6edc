"""The demo's chart: performance nodes against performance-pod demand, as a PNG file.

Why no matplotlib: the chart is two step-lines, a shaded band, axes and a few words.
Drawing that on an RGB byte canvas and encoding it with ``zlib`` + ``struct`` takes
about 200 lines, while matplotlib (with numpy, pillow, fonttools …) would become a
runtime dependency of an operator that never draws anything else. Every line of a
step chart is axis-aligned, so there is no antialiasing or line rasterising to do.
Text uses a built-in 5x7 bitmap font (digits, capitals, a little punctuation;
lower case is drawn as capitals). The output is deterministic: same data, same bytes.

Pure: no I/O except ``write_chart`` writing the file it is given.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

RGB = tuple[int, int, int]

WHITE: RGB = (255, 255, 255)
BLACK: RGB = (0, 0, 0)
GRID: RGB = (225, 225, 225)
PERF: RGB = (214, 39, 40)
DRAIN: RGB = (253, 208, 162)
DEMAND: RGB = (31, 119, 180)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# 5x7 glyphs, one int per row, top row first, bit 4 is the leftmost pixel.
_FONT: dict[str, tuple[int, ...]] = {
    "0": (14, 17, 19, 21, 25, 17, 14), "1": (4, 12, 4, 4, 4, 4, 14),
    "2": (14, 17, 1, 2, 4, 8, 31), "3": (31, 2, 4, 2, 1, 17, 14),
    "4": (2, 6, 10, 18, 31, 2, 2), "5": (31, 16, 30, 1, 1, 17, 14),
    "6": (6, 8, 16, 30, 17, 17, 14), "7": (31, 1, 2, 4, 8, 8, 8),
    "8": (14, 17, 17, 14, 17, 17, 14), "9": (14, 17, 17, 15, 1, 2, 12),
    "A": (14, 17, 17, 17, 31, 17, 17), "B": (30, 17, 17, 30, 17, 17, 30),
    "C": (14, 17, 16, 16, 16, 17, 14), "D": (28, 18, 17, 17, 17, 18, 28),
    "E": (31, 16, 16, 30, 16, 16, 31), "F": (31, 16, 16, 30, 16, 16, 16),
    "G": (14, 17, 16, 23, 17, 17, 15), "H": (17, 17, 17, 31, 17, 17, 17),
    "I": (14, 4, 4, 4, 4, 4, 14), "J": (7, 2, 2, 2, 2, 18, 12),
    "K": (17, 18, 20, 24, 20, 18, 17), "L": (16, 16, 16, 16, 16, 16, 31),
    "M": (17, 27, 21, 21, 17, 17, 17), "N": (17, 17, 25, 21, 19, 17, 17),
    "O": (14, 17, 17, 17, 17, 17, 14), "P": (30, 17, 17, 30, 16, 16, 16),
    "Q": (14, 17, 17, 17, 21, 18, 13), "R": (30, 17, 17, 30, 20, 18, 17),
    "S": (15, 16, 16, 14, 1, 1, 30), "T": (31, 4, 4, 4, 4, 4, 4),
    "U": (17, 17, 17, 17, 17, 17, 14), "V": (17, 17, 17, 17, 17, 10, 4),
    "W": (17, 17, 17, 21, 21, 21, 10), "X": (17, 17, 10, 4, 10, 17, 17),
    "Y": (17, 17, 17, 10, 4, 4, 4), "Z": (31, 1, 2, 4, 8, 16, 31),
    " ": (0, 0, 0, 0, 0, 0, 0), "-": (0, 0, 0, 31, 0, 0, 0),
    ".": (0, 0, 0, 0, 0, 12, 12), ",": (0, 0, 0, 0, 12, 4, 8),
    ":": (0, 12, 12, 0, 12, 12, 0), "/": (0, 1, 2, 4, 8, 16, 0),
    "(": (2, 4, 8, 8, 8, 4, 2), ")": (8, 4, 2, 2, 2, 4, 8),
    "_": (0, 0, 0, 0, 0, 0, 31), "=": (0, 0, 31, 0, 31, 0, 0),
    "+": (0, 4, 4, 31, 4, 4, 0), ">": (8, 4, 2, 1, 2, 4, 8),
    "%": (24, 25, 2, 4, 8, 19, 3), "?": (14, 17, 1, 2, 4, 0, 4),
}  # fmt: skip


class Canvas:
    """A white RGB image with the few drawing operations a step chart needs."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self.pixels = bytearray(WHITE * (width * height))

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: RGB) -> None:
        """Fill the rectangle [x0, x1) x [y0, y1), clipped to the canvas."""
        x0, x1 = max(0, min(x0, x1)), min(self.width, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.height, max(y0, y1))
        if x0 >= x1:
            return
        row = bytes(color) * (x1 - x0)
        for y in range(y0, y1):
            start = (y * self.width + x0) * 3
            self.pixels[start : start + len(row)] = row

    def hline(self, x0: int, x1: int, y: int, color: RGB, width: int = 1) -> None:
        top = y - width // 2
        self.rect(min(x0, x1), top, max(x0, x1) + 1, top + width, color)

    def vline(self, x: int, y0: int, y1: int, color: RGB, width: int = 1) -> None:
        left = x - width // 2
        self.rect(left, min(y0, y1), left + width, max(y0, y1) + 1, color)

    def text(self, x: int, y: int, text: str, color: RGB = BLACK, scale: int = 2) -> None:
        """Draw ``text`` with its top-left corner at (x, y); 6 * scale pixels per char."""
        for i, char in enumerate(text.upper()):
            glyph = _FONT.get(char, _FONT["?"])
            left = x + i * 6 * scale
            for row, bits in enumerate(glyph):
                for col in range(5):
                    if bits & (1 << (4 - col)):
                        top = y + row * scale
                        self.rect(
                            left + col * scale, top, left + (col + 1) * scale, top + scale, color
                        )

    def png(self) -> bytes:
        """The canvas as PNG bytes (8-bit RGB, no filtering, zlib level 9)."""
        stride = self.width * 3
        raw = b"".join(
            b"\x00" + bytes(self.pixels[y * stride : (y + 1) * stride]) for y in range(self.height)
        )
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            PNG_SIGNATURE
            + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw, 9))
            + _chunk(b"IEND", b"")
        )


def text_width(text: str, scale: int = 2) -> int:
    return len(text) * 6 * scale - scale


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@dataclass(frozen=True)
class ChartData:
    """One value per tick: nodes in ActivePerformance / DrainingPerformance, perf-pod demand."""

    performance_nodes: Sequence[int]
    draining_nodes: Sequence[int]
    demand_pods: Sequence[int]
    managed_nodes: int
    pods_per_node: int
    title: str


def render_chart(data: ChartData, *, width: int = 820, height: int = 460) -> bytes:
    """Draw the chart: nodes on the left axis, pods on the right, scaled so one
    performance node's worth of pods (``pods_per_node``) sits at one node."""
    canvas = Canvas(width, height)
    left, right, top, bottom = 70, width - 90, 50, height - 100
    ticks = max(1, len(data.performance_nodes))
    per_node = max(1, data.pods_per_node)
    peak = max([data.managed_nodes, 1, *(math.ceil(p / per_node) for p in data.demand_pods)])
    step = max(1, math.ceil(peak / 8))
    y_max = math.ceil(peak / step) * step

    def y_of(nodes: float) -> int:
        return round(bottom - (bottom - top) * nodes / y_max)

    def x_of(index: float) -> int:
        return round(left + (right - left) * index / ticks)

    canvas.text((width - text_width(data.title)) // 2, 16, data.title)
    for value in range(0, y_max + 1, step):
        y = y_of(value)
        canvas.hline(left, right, y, GRID)
        label = str(value)
        canvas.text(left - 8 - text_width(label), y - 7, label)
        pods = str(value * per_node)
        canvas.text(right + 8, y - 7, pods, DEMAND)
    for i in range(ticks):
        label = str(i + 1)
        canvas.text((x_of(i) + x_of(i + 1) - text_width(label)) // 2, bottom + 8, label)
        canvas.vline(x_of(i), bottom, bottom + 4, BLACK)
    canvas.text((left + right - text_width("TICK")) // 2, bottom + 28, "TICK")
    canvas.text(8, top - 26, "NODES")
    canvas.text(right - 20, top - 26, "PERF PODS", DEMAND)

    for i, (perf, drain) in enumerate(
        zip(data.performance_nodes, data.draining_nodes, strict=True)
    ):
        if drain:
            canvas.rect(x_of(i), y_of(perf + drain), x_of(i + 1), y_of(perf), DRAIN)
    _step_line(canvas, [float(v) for v in data.performance_nodes], x_of, y_of, PERF)
    _step_line(canvas, [p / per_node for p in data.demand_pods], x_of, y_of, DEMAND)
    canvas.vline(left, top, bottom, BLACK, 2)
    canvas.vline(right, top, bottom, BLACK, 2)
    canvas.hline(left, right, bottom, BLACK, 2)

    legend = (
        (PERF, "PERFORMANCE NODES"),
        (DRAIN, "+ DRAINING (ECO, PERF PODS LEFT)"),
        (DEMAND, f"PERF-POD DEMAND (RIGHT AXIS, {per_node} PODS = 1 NODE)"),
    )
    y = bottom + 50
    x = left
    for color, label in legend:
        if x + 22 + text_width(label) > width - 10:
            x, y = left, y + 22
        canvas.rect(x, y, x + 16, y + 14, color)
        canvas.text(x + 22, y, label)
        x += 22 + text_width(label) + 24
    return canvas.png()


def _step_line(
    canvas: Canvas,
    values: Sequence[float],
    x_of: Callable[[float], int],
    y_of: Callable[[float], int],
    color: RGB,
) -> None:
    """A value holds for its whole tick; consecutive ticks are joined by a vertical."""
    previous: int | None = None
    for i, value in enumerate(values):
        y = y_of(value)
        canvas.hline(x_of(i), x_of(i + 1), y, color, 3)
        if previous is not None and previous != y:
            canvas.vline(x_of(i), previous, y, color, 3)
        previous = y


def write_chart(path: Path, data: ChartData) -> Path:
    """Render ``data`` and write it to ``path`` (atomically); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(render_chart(data))
    tmp.replace(path)
    return path
