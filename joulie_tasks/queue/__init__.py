"""The Celery layer: the app (its configuration) and thin tasks (docs/ARCHITECTURE.md,
layer 4)."""
