"""Ports: the interfaces the workflow needs, owned beside it and implemented by the
adapters (docs/ARCHITECTURE.md). ``cluster`` (the Kubernetes API and its resources),
``state`` (the tick's state), ``cache`` (the watch-fed cache) and ``metrics`` (every
metric name and how an increment is written). No I/O and no library client here."""

from joulie_tasks.ports import cache, cluster, metrics, state

__all__ = ["cache", "cluster", "metrics", "state"]
