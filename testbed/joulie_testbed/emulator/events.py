"""The emulator's ordered change log: what watches resume from (watch.py serves them).

``EventLog`` records every stored change (ADDED, MODIFIED, DELETED) with the global
resourceVersion it got, in order, keeping the last ``window`` events (like etcd's
compaction window); older resourceVersions answer 410 Expired. The store appends under
its lock; this module knows nothing of HTTP.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from joulie_testbed.emulator import errors

#: Events kept for resuming watches (older resourceVersions answer 410).
DEFAULT_WINDOW = 200_000


@dataclass(slots=True)
class Event:
    rv: int
    res_key: str
    kind: str  # ADDED, MODIFIED, DELETED
    namespace: str | None
    obj: dict[str, Any]
    body: bytes


class EventLog:
    """Ordered changes of every resource, bounded, with waiting for new ones."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        self.window = window
        self._events: list[Event] = []
        self._base = 0  # absolute index of _events[0]
        #: Changes with a resourceVersion ≤ this are forgotten: resuming from an older
        #: one is 410 Expired.
        self.compacted_rv = 0
        self._cond = threading.Condition()
        self._closing = 0  # bumped by close_all: every open stream ends
        self.abrupt = False

    def append(self, rv: int, res_key: str, kind: str, obj: dict[str, Any], body: bytes) -> None:
        ns = obj.get("metadata", {}).get("namespace")
        with self._cond:
            self._events.append(Event(rv, res_key, kind, ns, obj, body))
            if len(self._events) > 2 * self.window:
                drop = len(self._events) - self.window
                self.compacted_rv = self._events[drop - 1].rv
                del self._events[:drop]
                self._base += drop
            self._cond.notify_all()

    def compact(self, rv: int) -> None:
        """Forget every change up to ``rv`` (a watch resuming from before it gets 410)."""
        with self._cond:
            keep = [e for e in self._events if e.rv > rv]
            self._base += len(self._events) - len(keep)
            self._events = keep
            self.compacted_rv = max(self.compacted_rv, rv)

    def close_all(self, *, abrupt: bool = False) -> None:
        """End every open watch stream (cleanly, or by dropping the connection)."""
        with self._cond:
            self._closing += 1
            self.abrupt = abrupt
            self._cond.notify_all()

    def cursor_after(self, rv: int) -> int | None:
        """Absolute index of the first event after ``rv``; None when it is compacted."""
        with self._cond:
            if rv < self.compacted_rv:
                return None
            for i, event in enumerate(self._events):
                if event.rv > rv:
                    return self._base + i
            return self._base + len(self._events)

    def end(self) -> int:
        with self._cond:
            return self._base + len(self._events)

    def wait(self, cursor: int, timeout: float, closing: int) -> tuple[list[Event], int, bool]:
        """Events from ``cursor`` on (waiting up to ``timeout``), the new cursor, and
        whether streams are being closed. A cursor that fell out of the window raises
        an Expired error."""
        with self._cond:
            if cursor >= self._base + len(self._events) and self._closing == closing:
                self._cond.wait(timeout)
            if cursor < self._base:
                raise errors.ApiError(410, "too old resource version: the watch fell behind")
            start = cursor - self._base
            events = self._events[start:]
            return events, self._base + len(self._events), self._closing != closing

    @property
    def closing(self) -> int:
        with self._cond:
            return self._closing
