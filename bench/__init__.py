"""Scale benchmark of the joulie-tasks workflow against the reference call pattern (issue 5),
and a real kube-apiserver scale point beside the emulator (issue 9, ``--real-server``).

``python -m bench.run`` is the one command; see docs/BENCHMARKS.md for results.
"""
