"""Adapters: the only code that talks to the outside world (Kubernetes, Redis, Prometheus),
each implementing ports of ``joulie_tasks/ports`` (docs/ARCHITECTURE.md, layer 3)."""
