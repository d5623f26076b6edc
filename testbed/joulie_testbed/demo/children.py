"""The demo's own process rules on top of the shared harness (``joulie_testbed.procs``).

``Critical`` defers SIGINT/SIGTERM while a child is being started and recorded, so an
interrupt can never orphan one; ``child_environment`` keeps a user's exported operator
settings away from the children; ``check_shared_redis`` accepts only an empty database.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from types import FrameType, TracebackType
from typing import Any

import redis


class DemoError(Exception):
    """Raised when the demo cannot start or a child dies; the message is one line."""


class Terminated(BaseException):
    """Raised in the main thread when the demo receives SIGTERM."""


def child_environment(base: Mapping[str, str], drop: set[str]) -> dict[str, str]:
    """A child's environment: ``base`` without ``drop``ped names or Celery/Joulie knobs.

    ``base`` is the demo's own environment (passed in by the caller: only config.py
    reads ``os.environ`` by itself); the operator settings are then set explicitly,
    so a user's exported NODE_SELECTOR or POLICY_TYPE cannot change what the demo shows.
    """
    keep = {
        k: v
        for k, v in base.items()
        if k.upper() not in drop and not k.upper().startswith(("CELERY", "JOULIE"))
    }
    keep["PYTHONUNBUFFERED"] = "1"
    return keep


class Critical:
    """Defer SIGINT and SIGTERM during a block; re-deliver the first one at its end."""

    def __init__(self) -> None:
        self._pending: int | None = None
        self._saved: dict[int, Any] = {}

    def _hold(self, signum: int, frame: FrameType | None) -> None:
        if self._pending is None:
            self._pending = signum

    def __enter__(self) -> Critical:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._saved[sig] = signal.signal(sig, self._hold)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        if self._pending is not None and exc is None:
            signal.raise_signal(self._pending)


def check_shared_redis(url: str) -> str | None:
    """Why a Redis the user runs cannot host the demo, or None when it can.

    The demo's beat and worker share the broker queue with any operator already
    using that Redis (and would run each other's ticks), so only an empty database
    is accepted.
    """
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        size = int(client.dbsize())
    except redis.RedisError as e:
        return f"Redis at {url} does not answer ({type(e).__name__})"
    finally:
        client.close()
    if size:
        return f"Redis at {url} holds {size} keys; the demo needs an empty database"
    return None
