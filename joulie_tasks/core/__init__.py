"""The pure core: decisions from data, no I/O (docs/ARCHITECTURE.md, layer 1).

Nothing here imports the adapters, Celery, Redis, Kubernetes or Prometheus, reads the
clock or the environment; import-linter enforces it."""
