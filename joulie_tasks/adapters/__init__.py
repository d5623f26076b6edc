"""Adapters: the only code that talks to the outside world (Kubernetes, Redis, Prometheus),
each behind a port in ``ports.py`` (docs/ARCHITECTURE.md, layer 2)."""
