"""The watch benchmark's pure parts (bench/watch.py): the honest p99, the per-stage means
over every tick that ran, and the section it writes (rows per issue-20 target, with
target and verdict). The benchmark itself is not run here (it measures; it is not a test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import watch, write_marked


def test_p99_is_the_maximum_and_says_so_under_100_samples() -> None:
    assert watch.p99([1.0, 3.0, 2.0]) == (3.0, "= max of 3 samples")
    values = [float(i) for i in range(200)]
    assert watch.p99(values) == (197.0, "of 200 samples")


def test_stage_means_divide_by_the_ticks_that_ran_each_stage() -> None:
    before = {"total": (10.0, 4.0), "plan": (1.0, 4.0)}
    after = {"total": (13.0, 10.0), "plan": (1.0, 4.0), "guard": (0.5, 5.0)}
    # plan ran in no tick meanwhile: no mean rather than a zero
    assert watch.stage_means(before, after) == {"total": 0.5, "guard": 0.1}


def _point(nodes: int, steady: float, **extra: Any) -> dict[str, Any]:
    return {
        "cluster": {"nodes": nodes, "pods": nodes * 10},
        "nodes": nodes,
        "pods": nodes * 10,
        "seed_s": 1.0,
        "converge_s": 2.0,
        "list_mode": {"wall_s": [1.0], "requests": 12},
        "sync_s": 3.0,
        "cache_mode": {"wall_s": [steady] * 5, "requests": [0] * 5},
        "cache_mode_stage_s": {"snapshot": 0.01, "total": steady},
        "cache_mode_cpu_s": {"worker": steady / 2, "redis": 0.01, "ticks": 5},
        "watcher_peak_rss_mb": 80.0,
        "redis": {
            "used_memory": 2**20,
            "used_memory_peak": 2**21,
            "cache_bytes": {"joulie:cache:pods": 2**19},
            "cached_pods": 7,
            "keys": 40,
            "largest_keys": {"joulie:fsm": 2**21, "joulie:cache:pods": 2**19},
        },
        **extra,
    }


def _out(*, huge: bool) -> dict[str, Any]:
    out = _point(5000, 0.4)
    out.update(
        commit="abc123",
        reference={"wall_s": 7.0, "requests": 15917},
        reaction={
            "latencies_s": [1.0] * 19 + [4.0],
            "churn_rate": 25.0,
            "burst_size": 50,
        },
        bytes={"cache_per_hour": 2**20, "lists_per_hour": 2**21},
        big=_point(10000, 1.0),
    )
    if huge:
        out["huge"] = _point(20000, 0.45, watcher_peak_rss_mb=600.0)
    return out


def _row(text: str, starts: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(starts))


def test_the_section_has_a_row_per_target_with_its_verdict(tmp_path: Path) -> None:
    load = {"min": 1.0, "mean": 1.5, "max": 2.0}
    text = watch._render(_out(huge=True), "python -m bench.watch", 9.0, ["load"])
    assert text.startswith(watch.BEGIN)
    assert text.rstrip().endswith(watch.END)
    ratio = _row(text, "| steady tick, in-tick duration at 10,000 nodes")
    assert "**2.50x** (worker CPU per tick 0.500 s vs 0.200 s = 2.50x)" in ratio
    assert ratio.endswith("| missed |")
    assert _row(text, "| reaction latency p50 (20 bursts of 50").endswith("| met |")
    assert "(= max of 20 samples)" in _row(text, "| reaction latency p99")
    assert _row(text, "| reaction latency p99").endswith("**4.00 s** | missed |")
    assert _row(text, "| watcher peak RSS at 20,000 nodes").endswith("| missed |")
    assert _row(text, "| steady tick, in-tick duration at 20,000 nodes").endswith("| met |")
    assert "**3.0 s**" in _row(text, "| relist (watcher's initial sync")
    redis = _row(text, "| Redis memory at 20,000 nodes")
    assert "**1.0 MiB**" in redis
    assert "40 keys, largest `joulie:fsm` 2.0 MiB, `joulie:cache:pods` 0.5 MiB |" in redis
    assert "at commit abc123" in text
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text(f"head\n{watch.BEGIN}\nstale figures\n{watch.END}\ntail\n")
    write_marked(doc, text, begin=watch.BEGIN, end=watch.END)
    assert doc.read_text().startswith("head\n")
    assert doc.read_text().endswith("tail\n")
    assert "stale figures" not in doc.read_text()
    assert watch._machine((1.0, 1.0, 1.0), load)[0].endswith("mean 1.50, max 2.00.")


def test_without_the_huge_point_the_section_says_how_to_get_it() -> None:
    text = watch._render(_out(huge=False), "python -m bench.watch", 9.0, [])
    assert "run with `--huge 20000`" in text
    assert "| watcher peak RSS at 20,000" not in text
