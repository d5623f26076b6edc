"""Scale benchmark of the joulie-tasks workflow against the reference call pattern ,
and a real kube-apiserver scale point beside the emulator (``--real-server``).

``python -m bench.run`` is the one command; see docs/BENCHMARKS.md for results.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
