"""Watches served the way kube-apiserver serves them, plus a request log of writes.

``serve`` answers ``GET ...?watch=true`` (or ``/watch/...``)
with a chunked stream of ``{"type": ..., "object": ...}`` lines:

- no ``resourceVersion`` (or ``"0"``): synthetic ADDED events for every current
  object first, then live changes (what the real server does for rv ``""``/``"0"``);
- ``resourceVersion=N``: every change after N, then live; when N is older than the
  window, one ``ERROR`` event with a ``410 Expired`` Status, and the stream ends;
- ``allowWatchBookmarks=true``: a ``BOOKMARK`` (the object carries only the current
  resourceVersion) every ``bookmark_interval`` seconds of quiet;
- ``timeoutSeconds``: the server ends the stream cleanly after that long; the server
  may also end every stream at once (``close_all``, clean or abrupt).

``labelSelector`` and ``fieldSelector`` filter the events like a list. A DELETED
event carries the object with the deletion's resourceVersion.

``WriteLog`` is the API server's request log for the safety invariant: each node
label patch is recorded with the node's count of active performance-only pods *at
the moment the write was applied* (read from the store under its lock).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from joulie_testbed.emulator import api, errors, events, resources, selection, store


@dataclass
class WriteRecord:
    time: float
    method: str
    path: str
    node: str
    labels: dict[str, Any]
    performance_pods: int


class WriteLog:
    """Node label patches with the node's active performance-only pods at write time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: list[WriteRecord] = []

    def add(self, record: WriteRecord) -> None:
        with self._lock:
            self.records.append(record)

    def snapshot(self) -> list[WriteRecord]:
        with self._lock:
            return list(self.records)

    def clear(self) -> None:
        with self._lock:
            self.records.clear()

    def unsafe(self, profile_label: str, draining_label: str) -> list[WriteRecord]:
        """Writes that put a node to plain eco while it ran a performance pod."""
        return [
            r
            for r in self.snapshot()
            if r.labels.get(profile_label) == "eco"
            and r.labels.get(draining_label) != "true"
            and r.performance_pods > 0
        ]


def performance_pods_on(objects: store.Store, node: str) -> int:
    """Active performance-only pods bound to ``node`` (the emulator's own reading of
    docs/SPEC.md §4, written independently of the operator's classifier)."""
    count = 0
    with objects.lock:
        for entry in objects.pods_on_node(node):
            pod = entry.obj
            spec = pod.get("spec") or {}
            if (pod.get("metadata") or {}).get("deletionTimestamp"):
                continue
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            if _needs_performance(spec):
                count += 1
    return count


def _needs_performance(spec: dict[str, Any]) -> bool:
    key = "joulie.io/power-profile"
    selector = spec.get("nodeSelector") or {}
    if isinstance(selector, dict) and str(selector.get(key, "")).strip() == "performance":
        return True
    affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in affinity.get("nodeSelectorTerms") or []:
        for expr in (term or {}).get("matchExpressions") or []:
            if not isinstance(expr, dict) or expr.get("key") != key:
                continue
            values = {str(v).strip() for v in expr.get("values") or [] if isinstance(v, str)}
            if not values:
                continue
            op = expr.get("operator")
            if (op == "NotIn" and "eco" in values) or (op == "In" and "eco" not in values):
                return True
    return False


# --- serving --------------------------------------------------------------------------


def _chunk(wfile: Any, data: bytes) -> None:
    wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
    wfile.flush()


def _line(kind: str, body: bytes) -> bytes:
    return b'{"type":"' + kind.encode() + b'","object":' + body + b"}\n"


def _bookmark(res: resources.Resource, rv: int) -> bytes:
    obj = {
        "kind": res.kind,
        "apiVersion": res.api_version,
        "metadata": {"resourceVersion": str(rv)},
    }
    return _line("BOOKMARK", json.dumps(obj, separators=(",", ":")).encode())


def _expired(rv: str, current: str) -> bytes:
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"too old resource version: {rv} ({current})",
        "reason": "Expired",
        "code": 410,
    }
    return _line("ERROR", json.dumps(status, separators=(",", ":")).encode())


def _matcher(req: api.Request, res: resources.Resource) -> Callable[[dict[str, Any]], bool] | None:
    labels = selection.parse_labels(req.query.get("labelSelector", ""))
    fields = selection.parse_fields(req.query.get("fieldSelector", ""), res)
    if labels is None and fields is None:
        return None

    def match(obj: dict[str, Any]) -> bool:
        if labels is not None and not labels(obj["metadata"].get("labels") or {}):
            return False
        return fields is None or fields(obj)

    return match


def serve(
    handler: BaseHTTPRequestHandler,
    req: api.Request,
    route: api.Route,
    *,
    objects: store.Store,
    bookmark_interval: float,
) -> None:
    """Answer one watch request on ``handler``'s connection (blocks until it ends), from
    ``objects`` and their event log, with a bookmark every ``bookmark_interval`` of quiet."""
    try:
        timeout = float(req.query.get("timeoutSeconds") or 1800)
    except ValueError as e:
        raise errors.bad_request(f"timeoutSeconds: invalid value {e}") from e
    stream = _Stream(handler, req, route, objects)
    initial, expired = stream.start()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    try:
        if expired is not None:
            _chunk(handler.wfile, expired)
        else:
            for line in initial:
                _chunk(handler.wfile, line)
            if not stream.pump(timeout, bookmark_interval):
                return  # dropped abruptly
        _finish(handler)
    except OSError:  # the client went away
        handler.close_connection = True


class _Stream:
    """One open watch: its filters and its position in the event log."""

    def __init__(
        self,
        handler: BaseHTTPRequestHandler,
        req: api.Request,
        route: api.Route,
        objects: store.Store,
    ) -> None:
        self.handler = handler
        self.res = route.res
        self.namespace = route.namespace
        self.objects = objects
        self.match = _matcher(req, route.res)
        self.bookmarks = req.query.get("allowWatchBookmarks", "").lower() in ("1", "true")
        self.rv_text = req.query.get("resourceVersion", "")
        self.log = objects.events
        self.closing = self.log.closing
        self.cursor = 0

    def start(self) -> tuple[list[bytes], bytes | None]:
        """Initial ADDED lines (rv "" or "0"), or the ERROR line of a too-old version."""
        initial: list[bytes] = []
        with self.objects.lock:
            current = self.objects.resource_version
            self.cursor = self.log.end()
            if self.rv_text in ("", "0"):
                for entry in self.objects.objects(self.res, self.namespace):
                    if self.match is None or self.match(entry.obj):
                        initial.append(_line("ADDED", entry.body()))
                return initial, None
            try:
                since = int(self.rv_text)
            except ValueError as e:
                raise errors.bad_request(f"resourceVersion: invalid value {self.rv_text!r}") from e
            found = self.log.cursor_after(since)
            if found is None:
                return [], _expired(self.rv_text, current)
            self.cursor = found
            return [], None

    def pump(self, timeout: float, interval: float) -> bool:
        """Send events until the timeout or a close, a bookmark every ``interval`` of quiet
        when asked for; False when dropped abruptly."""
        deadline = time.monotonic() + timeout
        last_sent = time.monotonic()
        while (left := deadline - time.monotonic()) > 0:
            wait = min(left, interval if self.bookmarks else left, 0.5)
            try:
                changes, self.cursor, closed = self.log.wait(self.cursor, wait, self.closing)
            except errors.ApiError:
                _chunk(self.handler.wfile, _expired(self.rv_text, self.objects.resource_version))
                return True
            if closed:
                return not self.log.abrupt or not self._drop()
            if self._deliver(changes):
                last_sent = time.monotonic()
            elif self.bookmarks and time.monotonic() - last_sent >= interval:
                rv = _caught_up_rv(self.log, self.objects, self.cursor)
                if rv is not None:
                    _chunk(self.handler.wfile, _bookmark(self.res, rv))
                    last_sent = time.monotonic()
        return True

    def _deliver(self, changes: list[events.Event]) -> bool:
        sent = False
        for event in changes:
            if event.res_key != self.res.storage_key:
                continue
            if self.namespace and event.namespace != self.namespace:
                continue
            if self.match is not None and not self.match(event.obj):
                continue
            _chunk(self.handler.wfile, _line(event.kind, event.body))
            sent = True
        return sent

    def _drop(self) -> bool:
        self.handler.close_connection = True
        with contextlib.suppress(OSError):
            self.handler.connection.shutdown(socket.SHUT_RDWR)
        return True


def _caught_up_rv(log: events.EventLog, objects: store.Store, cursor: int) -> int | None:
    """The current resourceVersion when this stream has seen every logged change
    (changes are logged under the store lock), else None: a bookmark never skips."""
    with objects.lock:
        return int(objects.resource_version) if log.end() == cursor else None


def _finish(handler: BaseHTTPRequestHandler) -> None:
    handler.wfile.write(b"0\r\n\r\n")
    handler.wfile.flush()
    handler.close_connection = True
