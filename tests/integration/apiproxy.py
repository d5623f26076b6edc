"""A recording reverse proxy between the operator and an API server.

The operator's kubeconfig points at this plain-HTTP listener; every request is
forwarded unchanged (same Authorization header) to the upstream — the API emulator
or a real kube-apiserver over TLS — and answered with the upstream's own status,
headers and body. It gives a backend-independent request log (what the operator
asked and what the server said) and one test hook: ``conflict_before``, which makes
a *real* concurrent write just before a matching request is forwarded, so the server
itself answers 409 (no synthetic errors). Watches and other streams are not proxied.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}
_PATH = re.compile(
    r"^/(?:api/v1|apis/[^/]+/[^/]+)(?:/namespaces/[^/]+)?/(?P<resource>[^/?]+)"
    r"(?:/(?P<name>[^/?]+))?(?:/(?P<sub>[^/?]+))?"
)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    status: int

    @property
    def resource(self) -> str:
        m = _PATH.match(self.path)
        if m is None:
            return ""
        return m["resource"] if not m["sub"] else f"{m['resource']}/{m['sub']}"

    @property
    def verb(self) -> str:
        """The Kubernetes verb: list/get/create/update/patch/delete."""
        m = _PATH.match(self.path)
        named = m is not None and m["name"] is not None and m["resource"] != "namespaces"
        if self.method == "GET":
            return "get" if named else "list"
        return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
            self.method, self.method.lower()
        )


@dataclass
class _Hook:
    method: str
    pattern: re.Pattern[str]
    action: Callable[[str], None] | None
    times: int
    status: int = 0


class ApiProxy:
    """Forwarding proxy on a free loopback port; ``start()``/``stop()``."""

    def __init__(self, upstream: str, *, ca_file: Path | None = None) -> None:
        parts = urlsplit(upstream)
        self._upstream_host = parts.hostname or "127.0.0.1"
        self._upstream_port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = (
            ssl.create_default_context(cafile=str(ca_file)) if parts.scheme == "https" else None
        )
        self._lock = threading.Lock()
        self._log: list[Request] = []
        self._hooks: list[_Hook] = []
        self._in_flight = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> ApiProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- what the tests use -------------------------------------------------------

    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._log)

    def counters(self) -> Counter[tuple[str, str]]:
        """Requests by (verb, resource), like the emulator's own counters."""
        return Counter((r.verb, r.resource) for r in self.requests())

    def idle(self) -> bool:
        """True when no request is being forwarded (every answer so far is logged)."""
        with self._lock:
            return self._in_flight == 0

    def reset(self) -> None:
        with self._lock:
            self._log.clear()

    def conflict_before(
        self, method: str, path_regex: str, *, times: int, action: Callable[[str], None]
    ) -> None:
        """Run ``action(path)`` before forwarding the next ``times`` matching requests."""
        with self._lock:
            self._hooks.append(_Hook(method, re.compile(path_regex), action, times))

    def answer_instead(self, method: str, path_regex: str, *, status: int, times: int) -> None:
        """Answer the next ``times`` matching requests with ``status`` and a Status body,
        without forwarding them (for answers a real server cannot be made to give on
        demand, e.g. a 409 to a merge patch)."""
        with self._lock:
            self._hooks.append(_Hook(method, re.compile(path_regex), None, times, status))

    def _take_hook(self, method: str, path: str) -> _Hook | None:
        with self._lock:
            for hook in self._hooks:
                if hook.times > 0 and hook.method == method and hook.pattern.search(path):
                    hook.times -= 1
                    return hook
        return None

    # -- forwarding ---------------------------------------------------------------

    def _connect(self) -> http.client.HTTPConnection:
        if self._tls is not None:
            return http.client.HTTPSConnection(
                self._upstream_host, self._upstream_port, context=self._tls, timeout=60
            )
        return http.client.HTTPConnection(self._upstream_host, self._upstream_port, timeout=60)

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self._in_flight += 1
        try:
            self._forward_one(handler)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _forward_one(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        hook = self._take_hook(handler.command, handler.path)
        if hook is not None and hook.action is None:
            self._answer(handler, hook.status)
            return
        if hook is not None and hook.action is not None:
            hook.action(handler.path)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_HEADERS}
        conn = self._connect()
        try:
            conn.request(handler.command, handler.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        with self._lock:
            self._log.append(Request(handler.command, handler.path, resp.status))
        handler.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in _HOP_HEADERS:
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _answer(self, handler: BaseHTTPRequestHandler, status: int) -> None:
        body = json.dumps(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": f"injected by the test proxy: {status}",
                "code": status,
            }
        ).encode()
        with self._lock:
            self._log.append(Request(handler.command, handler.path, status))
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy._forward(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        return Handler
