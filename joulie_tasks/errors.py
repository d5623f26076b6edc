"""The exception tree of joulie-tasks.

Whether a failure is retried is decided by its type (see retrying.py): stage code
never catches library exceptions; the adapters (kube.py, store.py) translate them
into these classes and chain the original with ``from``.
"""

from __future__ import annotations


class JoulieError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(JoulieError):
    """Raised when one or more settings are invalid; ``lines`` names each variable."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


class StateStoreError(JoulieError):
    """Raised when Redis cannot be reached or answers unexpectedly."""


class TickSkipped(JoulieError):
    """Raised when a tick does not run: the lock is held elsewhere, or it is stale."""


class KubeError(JoulieError):
    """Raised when a Kubernetes API call fails; ``status`` is the HTTP code or 0."""

    def __init__(self, message: str, *, status: int = 0, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class KubeConflict(KubeError):
    """Raised on 409: the object changed since it was read (or already exists)."""


class KubeTransient(KubeError):
    """Raised on 5xx, 429, timeouts and connection errors: worth retrying later."""


class KubeFatal(KubeError):
    """Raised on any other 4xx (403, 404, 422 …): retrying will not help."""


class KubeUnreachable(KubeTransient):
    """Raised when the API server cannot be reached at all."""
