"""Kubernetes adapter: the only module that imports the official ``kubernetes`` client.

It speaks raw JSON through the client's ``ApiClient`` (auth, TLS, kubeconfig and
connection pool come from the official client) instead of deserialising tens of
thousands of pods into generated model objects. Every call has an explicit
timeout, urllib3's hidden retries are switched off (tenacity in retrying.py owns
retries), and every failure is mapped onto errors.py: 409 → KubeConflict;
429/5xx/timeouts/connection errors → KubeTransient; other 4xx → KubeFatal.
Node labels are written with an explicit merge-patch content type, never the
client's implicit strategic-merge choice.
"""

from __future__ import annotations

import collections
import copy
import json
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from joulie_tasks import errors

# The resources by name: the RBAC scan (tests/deploy/rbac_scan.py) reads the constant each
# request names.
from joulie_tasks.ports.cluster import (
    EVENTS,
    NO_ANSWER,
    NODES,
    PROFILES,
    TWIN_STATUS,
    TWINS,
    RequestKey,
    Resource,
)

logger = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
JSON = "application/json"


#: Header naming the tick (``<fencing token> <tick id>``) a request is made for, so an
#: API server's audit log (and the emulator's request log) can tell stale ticks apart.
#: Set by a per-tick view of the gateway (``ApiGateway.for_tick``), never process-wide.
TICK_HEADER = "X-Joulie-Tick"


def load_configuration(
    *, kubeconfig: str | None, context: str | None, pool_size: int
) -> k8s_client.Configuration:
    """Client configuration: explicit kubeconfig, else in-cluster, else ~/.kube/config."""
    cfg = k8s_client.Configuration()
    try:
        if kubeconfig:
            k8s_config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=cfg
            )
        else:
            try:
                k8s_config.load_incluster_config(client_configuration=cfg)
            except ConfigException:
                k8s_config.load_kube_config(context=context, client_configuration=cfg)
    except (ConfigException, OSError, TypeError) as e:
        where = kubeconfig or "in-cluster service account or ~/.kube/config"
        raise errors.KubeFatal(f"cannot load Kubernetes configuration from {where}: {e}") from e
    cfg.retries = False  # tenacity owns retries; urllib3 must not retry behind our back
    cfg.connection_pool_maxsize = pool_size
    return cfg


class ApiGateway:
    """KubeGateway over the official client, one per process (never shared across fork)."""

    def __init__(self, configuration: k8s_client.Configuration, *, timeout: float) -> None:
        self._api = k8s_client.ApiClient(configuration)
        self._timeout = (min(timeout, 5.0), timeout)
        self.host = configuration.host
        self._lean_timeout = urllib3.Timeout(connect=self._timeout[0], read=self._timeout[1])
        manager = self._api.rest_client.pool_manager
        #: The host's own connection pool, used directly by the hot writes; behind a
        #: proxy (a ProxyManager) they go through the manager, which speaks to the proxy.
        self._pool: urllib3.HTTPConnectionPool | None = (
            manager.connection_from_url(self.host) if type(manager) is urllib3.PoolManager else None
        )
        #: A host may carry a path (an API behind a gateway: https://h/k8s/clusters/c).
        self._prefix = (urllib3.util.parse_url(self.host).path or "").rstrip("/")
        self.request_counts: collections.Counter[RequestKey] = collections.Counter()
        self._counts_lock = threading.Lock()
        self._tick_tag: str | None = None

    def close(self) -> None:
        self._api.close()

    def for_tick(self, tag: str) -> ApiGateway:
        """A view of this gateway whose every request carries ``X-Joulie-Tick: <tag>``.

        It shares the connection pool and the request counters (so either flushes
        both); the tag lives on the view, so concurrent ticks or a batch's write
        threads never see another tick's tag. Close the gateway, not the view.
        """
        view = copy.copy(self)
        view._tick_tag = tag
        return view

    # --- reads ---------------------------------------------------------------------------

    def list_items(self, resource: Resource, *, page_size: int) -> Iterator[dict[str, Any]]:
        """Every item of a collection, page by page (``limit``/``continue``)."""
        token: str | None = None
        while True:
            query: list[tuple[str, Any]] = [("limit", page_size)]
            if token:
                query.append(("continue", token))
            page = self._request("list", resource, "GET", resource.path(), query=query)
            items = page.get("items") or []
            yield from items
            token = (page.get("metadata") or {}).get("continue") or None
            if not token:
                return

    def list_all(
        self, resource: Resource, *, page_size: int, field_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """Every item of a collection and the resourceVersion of the list (for a watch
        to resume from); ``field_selector`` filters server-side (``spec.nodeName=x``)."""
        items: list[dict[str, Any]] = []
        version = ""
        for page, rv in self.list_pages(
            resource, page_size=page_size, field_selector=field_selector
        ):
            items.extend(page)
            version = version or rv
        return items, version

    def list_pages(
        self, resource: Resource, *, page_size: int, field_selector: str | None = None
    ) -> Iterator[tuple[list[dict[str, Any]], str]]:
        """A collection page by page, each with the list's resourceVersion (the first
        page's: later pages belong to the same snapshot), so a caller can reduce each
        page before the next one is read."""
        token: str | None = None
        version = ""
        while True:
            query: list[tuple[str, Any]] = [("limit", page_size)]
            if field_selector:
                query.append(("fieldSelector", field_selector))
            if token:
                query.append(("continue", token))
            page = self._request("list", resource, "GET", resource.path(), query=query)
            meta = page.get("metadata") or {}
            version = version or str(meta.get("resourceVersion") or "")
            yield page.get("items") or [], version
            token = meta.get("continue") or None
            if not token:
                return

    def watch_events(
        self, resource: Resource, *, resource_version: str, timeout_s: int
    ) -> Iterator[dict[str, Any]]:
        """Watch events (raw JSON dicts: ``type``, ``object``) after ``resource_version``,
        with bookmarks, until the server ends the stream (at most ``timeout_s``).

        A 410 arrives as an ``ERROR`` event (the caller relists); an HTTP error status
        raises like any request; a broken stream raises KubeUnreachable.
        """
        query: list[tuple[str, Any]] = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", timeout_s),
        ]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        return self._stream("watch", resource, "GET", resource.path(), query=query, wait=timeout_s)

    def _stream(
        self,
        verb: str,
        resource: Resource,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]],
        wait: float,
    ) -> Iterator[dict[str, Any]]:
        """A streamed GET: one JSON document per line, yielded as it arrives."""
        headers = {"Accept": JSON}
        method, url, headers, _, _ = self._api.param_serialize(
            method, path, query_params=query, header_params=headers, auth_settings=["BearerToken"]
        )
        try:
            response = self._api.call_api(
                method,
                url,
                header_params=headers,
                _request_timeout=(min(self._timeout[0], 5.0), wait + self._timeout[1]),
            )
        except urllib3.exceptions.HTTPError as e:
            self._count(verb, resource, NO_ANSWER)
            raise errors.KubeUnreachable(
                f"{verb} {self.host}{path}: {type(e).__name__}: {e}"
            ) from e
        except k8s_client.ApiException as e:
            self._count(verb, resource, NO_ANSWER)
            raise errors.KubeTransient(f"{verb} {self.host}{path}: {e.reason}") from e
        self._count(verb, resource, str(response.status))
        return self._lines(response, verb=verb, path=path)

    def _lines(self, response: Any, *, verb: str, path: str) -> Iterator[dict[str, Any]]:
        raw = response.response
        try:
            if not 200 <= response.status < 300:
                raise _error_for(
                    response.status, raw.read(), headers=response.headers, what=f"{verb} {path}"
                )
            buffer = b""
            for chunk in raw.stream(amt=65536, decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise errors.KubeUnreachable(
                f"{verb} {self.host}{path}: stream broken: {type(e).__name__}: {e}"
            ) from e
        finally:  # a stream left unread must not go back to the pool: close it
            raw.close()
            raw.release_conn()

    def get(self, resource: Resource, name: str) -> dict[str, Any] | None:
        """One object, or None when it does not exist."""
        try:
            return self._request("get", resource, "GET", resource.path(name))
        except errors.KubeFatal as e:
            if e.status == 404:
                return None
            raise

    # --- writes --------------------------------------------------------------------------

    def patch_node_labels(
        self, name: str, labels: Mapping[str, str], *, dry_run: bool = False
    ) -> dict[str, Any]:
        body = {"metadata": {"labels": dict(labels)}}
        return self._request(
            "patch",
            NODES,
            "PATCH",
            NODES.path(name),
            body=body,
            content_type=MERGE_PATCH,
            query=_dry_run(dry_run),
            lean=True,
        )

    def upsert_profile(
        self, body: Mapping[str, Any], *, exists: bool, dry_run: bool = False
    ) -> None:
        """Write one NodePowerProfile: create it (POST; 409 if it appeared meanwhile), or
        replace the existing one (PUT at the body's ``metadata.resourceVersion``; 409 if
        it moved on, 404 if it is gone)."""
        if not exists:
            self._request(
                "create",
                PROFILES,
                "POST",
                PROFILES.path(),
                body=body,
                query=_dry_run(dry_run),
                lean=True,
            )
            return
        name = str(body["metadata"]["name"])
        self._request(
            "update",
            PROFILES,
            "PUT",
            PROFILES.path(name),
            body=body,
            query=_dry_run(dry_run),
            lean=True,
        )

    def upsert_twin(self, body: Mapping[str, Any], *, exists: bool, dry_run: bool = False) -> None:
        """Write one NodeTwin's spec and metadata, as upsert_profile does (the server
        ignores ``status`` here: the CRD has the status subresource)."""
        if not exists:
            self._request(
                "create", TWINS, "POST", TWINS.path(), body=body, query=_dry_run(dry_run), lean=True
            )
            return
        name = str(body["metadata"]["name"])
        self._request(
            "update", TWINS, "PUT", TWINS.path(name), body=body, query=_dry_run(dry_run), lean=True
        )

    def patch_twin_status(
        self, name: str, status: Mapping[str, Any], *, dry_run: bool = False
    ) -> None:
        """Merge-patch a NodeTwin's status subresource: keys we do not send (the agent's
        ``controlStatus``) are kept; 404 when the object is gone."""
        self._request(
            "patch",
            TWIN_STATUS,
            "PATCH",
            f"{TWINS.path(name)}/status",
            body={"status": dict(status)},
            content_type=MERGE_PATCH,
            query=_dry_run(dry_run),
            lean=True,
        )

    def delete_twin(self, name: str) -> None:
        """Delete one NodeTwin (RBAC: ``delete`` on nodetwins)."""
        self._request("delete", TWINS, "DELETE", TWINS.path(name))

    def create_event(self, namespace: str, body: Mapping[str, Any]) -> None:
        """One Node Event (one per applied transition: as hot as the writes in a flip)."""
        self._request(
            "create", EVENTS, "POST", EVENTS.path(namespace=namespace), body=body, lean=True
        )

    def delete_profile(self, name: str) -> None:
        """Delete one NodePowerProfile (RBAC: ``delete`` on nodepowerprofiles)."""
        self._request("delete", PROFILES, "DELETE", PROFILES.path(name))

    # --- plumbing ------------------------------------------------------------------------

    def _request(
        self,
        verb: str,
        resource: Resource,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Mapping[str, Any] | None = None,
        content_type: str = JSON,
        lean: bool = False,
    ) -> dict[str, Any]:
        """One request, counted by verb, resource and status, its failure mapped onto
        errors.py; ``lean`` sends it straight through the client's connection pool."""
        send = self._send_lean if lean else self._send
        try:
            status, raw, headers = send(
                method, path, query=query, body=body, content_type=content_type
            )
        except urllib3.exceptions.SSLError as e:  # as the client maps it (status 0)
            self._count(verb, resource, NO_ANSWER)
            raise errors.KubeTransient(f"{method} {self.host}{path}: SSLError: {e}") from e
        except urllib3.exceptions.HTTPError as e:
            self._count(verb, resource, NO_ANSWER)
            raise errors.KubeUnreachable(
                f"{method} {self.host}{path}: {type(e).__name__}: {e}"
            ) from e
        except k8s_client.ApiException as e:  # raised for TLS problems (status 0)
            self._count(verb, resource, NO_ANSWER)
            raise errors.KubeTransient(f"{method} {self.host}{path}: {e.reason}") from e
        self._count(verb, resource, str(status))
        if 200 <= status < 300:
            return json.loads(raw) if raw else {}
        raise _error_for(status, raw, headers=headers, what=f"{method} {path}")

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None,
        body: Mapping[str, Any] | None,
        content_type: str,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        """Through the official client's ``param_serialize`` and ``call_api``."""
        method, url, headers, body_out, _ = self._api.param_serialize(
            method,
            path,
            query_params=query or None,
            header_params=self._headers(content_type),
            body=dict(body) if body is not None else None,
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(
            method, url, header_params=headers, body=body_out, _request_timeout=self._timeout
        )
        return response.status, response.read(), response.headers

    def _send_lean(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None,
        body: Mapping[str, Any] | None,
        content_type: str,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        """The hot writes: a JSON body of plain dicts straight into the client's urllib3
        pool (its TLS, client certificate and proxy), with the client's own auth headers
        (a rotated token is read again, as ``param_serialize`` does). It skips the
        client's per-request ``sanitize_for_serialization``, header merging and
        content-type dispatch: about a third of a write's client CPU (bench/firsttick.py).
        """
        headers = {**self._api.default_headers, **self._headers(content_type)}
        if self._api.cookie:
            headers["Cookie"] = self._api.cookie
        self._api.update_params_for_auth(headers, None, ["BearerToken"], path, method, None)
        target = path + ("?" + urlencode(query) if query else "")
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        pool = self._pool or self._api.rest_client.pool_manager
        response = pool.urlopen(
            method,
            self._prefix + target if self._pool is not None else self.host + target,
            body=data,
            headers=headers,
            timeout=self._lean_timeout,
            retries=False,
            redirect=False,
            preload_content=True,
        )
        return response.status, response.data, response.headers

    def _headers(self, content_type: str) -> dict[str, str]:
        """What every request of ours carries, the tick's tag included (both transports)."""
        headers = {"Accept": JSON, "Content-Type": content_type}
        if self._tick_tag is not None:
            headers[TICK_HEADER] = self._tick_tag
        return headers

    def _count(self, verb: str, resource: Resource, outcome: str) -> None:
        with self._counts_lock:
            self.request_counts[(verb, resource.plural, outcome)] += 1

    def take_request_counts(self) -> collections.Counter[RequestKey]:
        """Return and reset the request counters (flushed to Redis by the tick runner)."""
        with self._counts_lock:  # in place: per-tick views share this counter
            counts = self.request_counts.copy()
            self.request_counts.clear()
        return counts


def _dry_run(dry_run: bool) -> list[tuple[str, Any]] | None:
    return [("dryRun", "All")] if dry_run else None


def _error_for(status: int, raw: bytes, *, headers: Mapping[str, str], what: str) -> Exception:
    """Map an HTTP error status and its Status body onto the errors.py tree."""
    try:
        message = str(json.loads(raw).get("message") or "")
    except (ValueError, AttributeError):
        message = raw[:200].decode("utf-8", "replace")
    text = f"{what}: {status} {message}".strip()
    if status == 409:
        return errors.KubeConflict(text, status=status)
    if status == 429 or status >= 500:
        return errors.KubeTransient(text, status=status, retry_after=_retry_after(headers))
    return errors.KubeFatal(text, status=status)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After") if headers else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def build_gateway(
    *, kubeconfig: str | None, context: str | None, timeout: float, pool_size: int
) -> ApiGateway:
    """A fresh gateway for this process."""
    cfg = load_configuration(kubeconfig=kubeconfig, context=context, pool_size=pool_size)
    return ApiGateway(cfg, timeout=timeout)
