"""Fault injection, artificial latency, request counters and the request log.

A rule matches an HTTP method (or ``*``) and a regex searched in the request
*path* (query string excluded). The next ``times`` matching requests (``times=-1``:
every one until cleared) are delayed by ``delay_s`` and then either dropped (the
connection closes with no response), answered with ``status`` (a Status body;
``Retry-After`` in whole seconds, rounded up, when ``retry_after`` is set, and
1 s by default on 429) or, with no status, served normally. Rules are tried
oldest first; the first match is consumed.

Note for callers: urllib3 (under the official client) by itself retries GETs up to
3 times on 429/503 responses that carry Retry-After, sleeping as told, so an
injected throttle on a GET is only seen by the caller when it outlasts those
retries (``times`` > 3); POST/PUT/PATCH/DELETE see it at once.
Control endpoints (``/_emulator``) are never faulted, counted or logged. The request
log keeps every served request with its ``X-Joulie-Tick`` header, so a test can
check which tick (and fencing token) each write came from and when it landed.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, TypedDict


class FaultOptions(TypedDict, total=False):
    """What ``Faults.add`` takes besides method and path (its defaults apply to the rest):
    the keywords of ``Emulator.inject`` and ``RemoteEmulator.inject`` too."""

    status: int | None
    times: int
    retry_after: float | None
    delay_s: float
    drop: bool


@dataclass
class FaultRule:
    """One injected fault; ``remaining`` counts down to zero (or stays -1)."""

    id: int
    method: str
    path_regex: str
    status: int | None
    remaining: int
    retry_after: float | None
    delay_s: float
    drop: bool

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path_regex)

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and self._pattern.search(path) is not None

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "method": self.method,
            "path_regex": self.path_regex,
            "status": self.status,
            "times": self.remaining,
            "retry_after": self.retry_after,
            "delay_s": self.delay_s,
            "drop": self.drop,
        }


#: Requests the log keeps (the oldest go first).
REQUEST_LOG_KEPT = 100_000
#: The header a client may name its work with (joulie-tasks: ``<token> <tick id>``).
TICK_HEADER = "x-joulie-tick"


@dataclass(frozen=True)
class RequestRecord:
    """One served API request: when, what, and the tick header it carried (if any)."""

    at: float
    method: str
    path: str
    tick: str | None


class Faults:
    """Thread-safe rule list, global latency and per-(verb, resource) counters."""

    def __init__(self, latency_ms: float = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._counts: Counter[tuple[str, str]] = Counter()
        self._requests: deque[RequestRecord] = deque(maxlen=REQUEST_LOG_KEPT)
        self.latency_s = latency_ms / 1000

    def add(
        self,
        method: str,
        path_regex: str,
        *,
        status: int | None = None,
        times: int = 1,
        retry_after: float | None = None,
        delay_s: float = 0,
        drop: bool = False,
    ) -> FaultRule:
        if status is not None and not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error code (400-599) or None, not {status}")
        if times == 0 or times < -1:
            raise ValueError("times must be positive, or -1 for 'until cleared'")
        if status is None and not drop and delay_s <= 0:
            raise ValueError("a fault needs a status, a delay or drop=True")
        with self._lock:
            rule = FaultRule(
                id=next(self._ids),
                method=method.upper(),
                path_regex=path_regex,
                status=status,
                remaining=times,
                retry_after=retry_after,
                delay_s=delay_s,
                drop=drop,
            )
            self._rules.append(rule)
            return rule

    def take(self, method: str, path: str) -> FaultRule | None:
        """Consume one use of the first rule matching this request, if any."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    if rule.remaining > 0:
                        rule.remaining -= 1
                        if rule.remaining == 0:
                            self._rules.remove(rule)
                    return rule
        return None

    def remove(self, rule_id: int) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.describe() for r in self._rules]

    def count(self, verb: str, resource: str) -> None:
        with self._lock:
            self._counts[(verb, resource)] += 1

    def counters(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)

    def reset_counters(self) -> None:
        with self._lock:
            self._counts.clear()
            self._requests.clear()

    def log_request(self, method: str, path: str, tick: str | None) -> None:
        """Note a request as it is served (after any injected delay)."""
        with self._lock:
            self._requests.append(RequestRecord(time.time(), method, path, tick))

    def request_log(self) -> list[RequestRecord]:
        """The requests served, oldest first (at most REQUEST_LOG_KEPT)."""
        with self._lock:
            return list(self._requests)
