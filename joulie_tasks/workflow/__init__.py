"""One tick, independent of Celery: start, stages, batches, finish, fail, fencing
(docs/ARCHITECTURE.md, layer 3)."""
