"""HTTP transport: a threaded stdlib server speaking HTTP/1.1 keep-alive, JSON only.

Per request: parse, route ``/_emulator/...`` to the control API, otherwise count
the request, apply latency and any matching fault, then hand over to api.py. Every
error leaves as a ``metav1.Status`` body. Unknown query parameters (``pretty``,
``fieldManager``, ``timeoutSeconds``...) are ignored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from joulie_testbed.emulator import api, control, errors, faults, resources, store, watch

logger = logging.getLogger(__name__)


class Server(ThreadingHTTPServer):
    """Tracks open connections so stop() can close idle keep-alive ones."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        rest: api.Api,
        faults: faults.Faults,
        controls: control.Controls,
        token: str | None,
    ) -> None:
        super().__init__(address, Handler)
        self.rest = rest
        self.faults = faults
        self.controls = controls
        self.token = token
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        #: Seconds of quiet after which a watch with allowWatchBookmarks gets a BOOKMARK.
        self.watch_bookmark_interval = 1.0
        #: Node label patches with the node's performance pods at write time (watch.py).
        self.write_log = watch.WriteLog()

    def close_connections(self) -> None:
        with self.connections_lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server: Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # --- plumbing ------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, err: errors.ApiError) -> None:
        self._send(err.code, store.dumps(err.status()), err.headers)

    def _drop(self) -> None:
        """Close the connection without a response, as a dying server or proxy would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = api.Request(self.command, url.path, query, headers, self._read_body())
        try:
            if url.path.startswith("/_emulator/"):
                code, payload = self.server.controls.handle(req)
                self._send(code, json.dumps(payload).encode())
                return
            self._serve(req)
        except errors.ApiError as err:
            self._send_error(err)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:
            logger.exception("emulator: unhandled error on %s %s", self.command, self.path)
            self._send_error(errors.ApiError(500, f"emulator internal error: {e!r}"))

    def _serve(self, req: api.Request) -> None:
        srv = self.server
        if srv.token is not None and self.headers.get("Authorization") != f"Bearer {srv.token}":
            raise errors.ApiError(401, "Unauthorized")
        route = api.parse_route(req.method, req.path, req.query)
        if route is not None:
            srv.faults.count(route.verb, route.counter_resource)
        if srv.faults.latency_s > 0:
            time.sleep(srv.faults.latency_s)
        rule = srv.faults.take(req.method, req.path)
        if rule is not None:
            if rule.delay_s > 0:
                time.sleep(rule.delay_s)
            if rule.drop:
                self._drop()
                return
            if rule.status is not None:
                raise _injected(rule, route)
        srv.faults.log_request(req.method, req.path, req.headers.get(faults.TICK_HEADER))
        if route is not None and route.verb == "watch":
            srv.rest.schema(route.res)  # 404 while a custom resource's CRD is missing
            watch.serve(
                self,
                req,
                route,
                objects=srv.rest.store,
                bookmark_interval=srv.watch_bookmark_interval,
            )
            return
        if route is not None and route.verb == "patch" and route.res is resources.NODES:
            resp = self._logged_node_patch(req, route)
            self._send(resp.code, resp.body, resp.headers)
            return
        if route is not None:
            resp = srv.rest.handle(req, route)
            self._send(resp.code, resp.body, resp.headers)
            return
        doc = srv.rest.discovery(req.path) if req.method == "GET" else None
        if doc is None:
            raise errors.ApiError(404, "the server could not find the requested resource")
        self._send(200, store.dumps(doc))

    def _logged_node_patch(self, req: api.Request, route: api.Route) -> api.Response:
        """Apply a node patch and log it with the node's performance pods at that moment."""
        objects = self.server.rest.store
        with objects.lock:
            resp = self.server.rest.handle(req, route)
            if resp.code == 200 and route.name and req.query.get("dryRun") is None:
                labels = (json.loads(resp.body).get("metadata") or {}).get("labels") or {}
                self.server.write_log.add(
                    watch.WriteRecord(
                        time=time.time(),
                        method=req.method,
                        path=req.path,
                        node=route.name,
                        labels=labels,
                        performance_pods=watch.performance_pods_on(objects, route.name),
                    )
                )
        return resp


def _injected(rule: faults.FaultRule, route: api.Route | None) -> errors.ApiError:
    """The Status an injected fault answers with, shaped like the real one."""
    assert rule.status is not None
    headers: dict[str, str] = {}
    details: dict[str, Any] | None = None
    if route is not None and route.name:
        details = {"name": route.name, "kind": route.res.plural}
    retry_after = rule.retry_after
    if retry_after is None and rule.status == 429:
        retry_after = 1.0  # the real server always tells a throttled client when to come back
    if retry_after is not None:
        # Whole seconds only (RFC 9110): urllib3 rejects "0.05" with InvalidHeader when it
        # retries a GET on its own. Use retry_after=0 for fast tests.
        seconds = math.ceil(retry_after)
        headers["Retry-After"] = str(seconds)
        details = {**(details or {}), "retryAfterSeconds": seconds}
    if rule.status == 409 and route is not None and route.name:
        err = errors.conflict(route.res, route.name)
        err.message += " (injected)"
        return err
    message = f"injected fault: {errors.REASONS.get(rule.status, 'error')} (rule {rule.id})"
    return errors.ApiError(rule.status, message, details=details, headers=headers)
