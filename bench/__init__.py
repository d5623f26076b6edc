"""Scale benchmark of the joulie-tasks workflow against the reference call pattern ,
and a real kube-apiserver scale point beside the emulator (``--real-server``).

``python -m bench.run`` is the one command; see docs/BENCHMARKS.md for results.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_marked(path: Path, text: str, *, begin: str, end: str) -> None:
    """Replace the part of ``path`` between ``begin`` and ``end`` (``text`` carries both
    markers), or append ``text`` when the file has no such part yet."""
    current = path.read_text() if path.exists() else ""
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        _, tail = rest.split(end, 1)
        path.write_text(head + text.rstrip("\n") + tail)
    else:
        path.write_text(current.rstrip("\n") + "\n\n" + text)
