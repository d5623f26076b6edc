"""Scale benchmark of the joulie-tasks workflow against the reference call pattern (issue 5).

``python -m bench.run`` is the one command; see docs/BENCHMARKS.md for results.
"""
