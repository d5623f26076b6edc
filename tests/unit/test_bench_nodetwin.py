"""The output-mode benchmark's pure parts (bench/nodetwin.py): the modes it accepts, the
figure it reports (write requests per changed node), and its marked report section.
The benchmark itself is not run here (it measures; it is not a test).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bench import nodetwin, write_marked
from bench.scenarios import Sample


def _sample(nodes: int, **requests: int) -> Sample:
    counts = Counter({k.replace("_", " ", 1).replace("_", "/"): n for k, n in requests.items()})
    writes = sum(n for k, n in counts.items() if not k.startswith("list "))
    return Sample(wall_s=0.5, requests=counts, writes=writes, nodes=nodes)


def test_modes_are_output_api_values_and_anything_else_is_refused() -> None:
    assert nodetwin.parse_modes(" NodeTwin , both") == ["nodetwin", "both"]
    for bad in ("", "nodetwins", "nodetwin,npp"):
        with pytest.raises(ValueError, match="expected a comma-separated list"):
            nodetwin.parse_modes(bad)


def test_requests_per_changed_node_is_the_median_flips_writes_per_node() -> None:
    result = nodetwin.ModeResult("nodetwin")
    result.flips = [
        _sample(10, patch_nodes=10, update_nodetwins=10, patch_nodetwins_status=10),
        _sample(10, patch_nodes=10, update_nodetwins=10, patch_nodetwins_status=10),
    ]
    assert result.per_changed_node() == 3.0


def test_the_section_carries_its_markers_and_replaces_only_itself(tmp_path: Path) -> None:
    result = nodetwin.ModeResult("both", nodes=10)
    result.first = _sample(10, list_nodes=1, patch_nodes=10, create_nodetwins=10)
    result.steady_cache = _sample(10)
    text = nodetwin.render([result], n=12, command="cmd", machine="m")
    assert text.startswith(nodetwin.BEGIN)
    assert text.rstrip().endswith(nodetwin.END)
    assert "| first tick (every node new) | 21 = 1 lists + 10 create nodetwins + " in text
    assert "| steady, cache-fed (watcher) | 0; 0.50 s |" in text
    out = tmp_path / "B.md"
    out.write_text("# head\n\n" + text + "\n## after\n")
    write_marked(out, text.replace("cmd", "new"), begin=nodetwin.BEGIN, end=nodetwin.END)
    written = out.read_text()
    assert written.startswith("# head\n")
    assert written.endswith("## after\n")
    assert "`new`" in written
    assert "`cmd`" not in written
