"""``joulie-tasks demo`` end to end, run the way a newcomer runs it (a subprocess).

Covers:
- a short run exits 0 and prints the table header, at least one highlighted
  transition line, the summary line, and writes a valid PNG of the expected size;
- ``--output-api nodetwin`` writes one NodeTwin per managed node and no profile, and
  the table shows the twins' caps in percent of max;
- the chart (matplotlib) is a decodable, deterministic PNG showing both series;
- Ctrl-C (SIGINT) after the first tick exits 130, still prints the summary, and
  leaves no process behind: not the worker (nor its prefork pool), beat, the watcher or
  redis-server. The demo prints ``demo: started <what> pid N``; every process in
  those sessions, or whose command line names the demo's work directory, must go.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from matplotlib import colors, image

from joulie_testbed.demo import chart
from joulie_testbed.procs import wait_for
from tests import REPO

pytestmark = pytest.mark.slow

STARTED = re.compile(r"^demo: started (\S+) pid (\d+)")


@pytest.fixture(autouse=True)
def _require_redis_server() -> None:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is required in CI (scripts/bootstrap.sh installs it)")
        pytest.skip("redis-server is not installed")


class Demo:
    """A running ``joulie-tasks demo`` whose stdout is collected line by line."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.workdir = tmp / "work"
        self.png = tmp / "demo.png"
        self.lines: list[str] = []
        command = [sys.executable, "-m", "joulie_tasks", "demo", "--workdir", str(self.workdir)]
        command += ["--png", str(self.png), *args]
        self.proc = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def started_pids(self) -> dict[str, int]:
        return {m[1]: int(m[2]) for line in self.lines if (m := STARTED.match(line))}

    def wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the demo did not finish in {timeout}s:\n{self.output}") from None
        finally:
            self.close()
        return code

    def close(self) -> None:
        """Kill the demo if still running (a failed test) and release its pipe."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def start_demo(tmp_path: Path) -> Iterator[Callable[..., Demo]]:
    started: list[Demo] = []

    def start(*args: str) -> Demo:
        demo = Demo(tmp_path, *args)
        started.append(demo)
        return demo

    yield start
    for demo in started:
        demo.close()


def leftover_processes(workdir: Path, sessions: Iterable[int]) -> list[str]:
    """Processes of the demo's child sessions, or naming its work directory."""
    wanted = set(sessions)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited while we looked
        fields = stat.rsplit(")", 1)[1].split()
        state, session = fields[0], int(fields[3])
        if state == "Z":
            continue  # a zombie is already dead; its parent reaps it
        if int(entry.name) in wanted or session in wanted or str(workdir) in cmdline:
            found.append(f"{entry.name} (session {session}): {cmdline.strip()}")
    return found


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height = struct.unpack(">II", data[16:24])
    assert data[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82"
    return width, height


def test_a_short_demo_shows_ticks_transitions_summary_and_writes_a_png(
    start_demo: Callable[..., Demo],
) -> None:
    # Given a 3-tick demo on 8 nodes, one tick a second
    demo = start_demo("--ticks", "3", "--interval", "1s", "--nodes", "8")

    # When it runs to the end
    code = demo.wait(timeout=50)

    # Then it succeeded, showed tables with highlighted transitions and a summary
    out = demo.output
    assert code == 0, out
    assert re.search(r"NODE\s+STATE\s+PROFILE\s+DRAINING\s+PERF PODS\s+CAP \(W\)", out), out
    assert [line for line in demo.lines if line.startswith("* ") and "→" in line], out
    assert "summary: 3 of 3 ticks" in out, out
    assert "\033[" not in out, "no ANSI codes when stdout is not a terminal"
    # And the chart is a real PNG
    assert f"chart: {demo.png}" in out
    assert png_size(demo.png) == (820, 460)
    # And nothing it started is left
    pids = demo.started_pids()
    assert set(pids) == {"redis-server", "worker", "beat", "watch"}, out
    assert leftover_processes(demo.workdir, pids.values()) == []


def test_the_demo_runs_in_nodetwin_mode_and_shows_the_twins_caps(
    start_demo: Callable[..., Demo],
) -> None:
    # Given a 2-tick demo on 4 nodes writing NodeTwins only
    demo = start_demo(
        "--ticks", "2", "--interval", "1s", "--nodes", "4", "--output-api", "nodetwin"
    )

    # When it runs to the end
    code = demo.wait(timeout=50)

    # Then the caps shown are the twins' percentages of max, and the cluster holds one
    # twin per managed node and no profile
    out = demo.output
    assert code == 0, out
    assert "output nodetwin" in out, out
    assert re.search(r"PERF PODS\s+CAP \(%\)", out), out
    row = re.compile(r"^[*+ ] node-\d+\s+Active\S+\s+(\S+)\s+(?:yes|no)\s+\S+\s+(\S+)")
    caps = {(m[1], m[2]) for line in demo.lines if (m := row.match(line))}
    assert caps, out
    assert caps <= {("performance", "100"), ("eco", "60")}, out
    assert "objects: 0 NodePowerProfiles, 4 NodeTwins" in out, out
    pids = demo.started_pids()
    assert leftover_processes(demo.workdir, pids.values()) == []


def test_ctrl_c_mid_run_exits_130_and_leaves_no_process_behind(
    start_demo: Callable[..., Demo],
) -> None:
    # Given a long demo that has shown its first tick
    demo = start_demo("--ticks", "50", "--interval", "1s", "--nodes", "6")
    wait_for(
        lambda: any(line.startswith("tick 1/50") for line in demo.lines) or demo.proc.poll(),
        timeout=40,
        what="the first tick in the demo's output",
    )
    assert demo.proc.poll() is None, demo.output
    pids = demo.started_pids()
    assert set(pids) == {"redis-server", "worker", "beat", "watch"}, demo.output
    assert leftover_processes(demo.workdir, pids.values()), "the children should be running"

    # When it gets Ctrl-C
    demo.proc.send_signal(signal.SIGINT)
    code = demo.wait(timeout=30)

    # Then it exits 130 with the summary so far, and every child is gone
    assert code == 130, demo.output
    assert "(interrupted)" in demo.output
    assert re.search(r"summary: [1-9]\d* of 50 ticks", demo.output), demo.output
    wait_for(
        lambda: not leftover_processes(demo.workdir, pids.values()),
        timeout=10,
        what="no demo process left",
    )


def test_the_chart_is_a_decodable_deterministic_png_with_both_series(tmp_path: Path) -> None:
    # Given four ticks of data
    data = chart.ChartData(
        performance_nodes=[3, 7, 9, 3],
        draining_nodes=[0, 0, 0, 4],
        demand_pods=[2, 31, 43, 2],
        managed_nodes=12,
        pods_per_node=5,
        title="TEST",
    )

    # When it is drawn twice
    first = chart.write_chart(tmp_path / "a.png", data)
    second = chart.write_chart(tmp_path / "b.png", data)

    # Then the same bytes, a PNG of the demo's size, decodable, with both series' colours
    assert first.read_bytes() == second.read_bytes()
    assert png_size(first) == (820, 460)
    pixels = (image.imread(first)[:, :, :3] * 255).round().astype(int)
    colours = {tuple(p) for p in pixels.reshape(-1, 3).tolist()}
    assert _rgb(chart.PERF) in colours
    assert _rgb(chart.DEMAND) in colours
    assert _rgb(chart.DRAIN) in colours


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    r, g, b = (round(c * 255) for c in colors.to_rgb(hex_colour))
    return (r, g, b)
