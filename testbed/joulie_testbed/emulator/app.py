"""The ``Emulator``: store + REST layer + HTTP server + test controls, in one object.

Runs in a background thread of the test process (``start()``), or as its own
process via ``python -m joulie_testbed.emulator``. Either way other processes (Celery
workers) reach it through the kubeconfig from ``write_kubeconfig``. The test
controls here are mirrored over HTTP under ``/_emulator`` (see control.py).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from importlib import resources as importlib_resources
from pathlib import Path
from types import TracebackType
from typing import Any, Unpack

import yaml

from joulie_testbed.emulator import (
    api,
    control,
    conversion,
    errors,
    faults,
    resources,
    server,
    store,
    watch,
)
from joulie_testbed.emulator import seed as seeding

logger = logging.getLogger(__name__)

CHURN_LABEL = "emulator.joulie.io/churn"


def crd_manifest(file: str = "nodepowerprofiles.yaml") -> dict[str, Any]:
    """A CRD shipped as package data (default: the NodePowerProfile one)."""
    text = importlib_resources.files("joulie_tasks").joinpath(f"manifests/{file}").read_text()
    manifest: dict[str, Any] = yaml.safe_load(text)
    return manifest


class ConcurrentWriter:
    """Background thread rewriting one node label every ``interval_ms`` until stopped.

    Each write bumps the node's resourceVersion, so a client doing read-modify-write
    on that node meets 409s: the "conflict storm" of docs/SPEC.md §9's retry requirement.
    """

    _ids = itertools.count(1)

    def __init__(
        self, emulator: Emulator, node: str, *, interval_ms: float, label_key: str
    ) -> None:
        self.id = next(self._ids)
        self.node = node
        self.writes = 0
        self._emulator = emulator
        self._interval = interval_ms / 1000
        self._key = label_key
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"emulator-writer-{node}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self._emulator.mutate_node_labels(self.node, {self._key: str(self.writes)})
                self.writes += 1
            except KeyError:
                logger.warning("concurrent writer: node %s does not exist", self.node)
            self._stopped.wait(self._interval)

    def stop(self) -> int:
        """Stop and return how many writes were made."""
        self._stopped.set()
        self._thread.join()
        return self.writes

    def __enter__(self) -> ConcurrentWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Emulator:
    """An in-memory Kubernetes API server for tests; see the package docstring."""

    def __init__(
        self, latency_ms: float = 0, *, token: str | None = None, install_crd: bool = True
    ) -> None:
        self.store = store.Store()
        self.rest = api.Api(self.store)
        self.faults = faults.Faults(latency_ms)
        self.controls = control.Controls(self)
        self.token = token
        self._install_crd = install_crd
        self._server: server.Server | None = None
        self._thread: threading.Thread | None = None
        self._writers: dict[int, ConcurrentWriter] = {}
        #: Node label patches with the node's performance pods at write time (watch.py);
        #: kept across stop()/start(), like the server's audit log.
        self.write_log = watch.WriteLog()
        self._bookmark_interval = 1.0
        if install_crd:
            self.install_crd()

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> Emulator:
        """Serve on ``host:port`` (0: any free port) from a daemon thread; returns self."""
        if self._server is not None:
            raise RuntimeError("emulator already started")
        srv = server.Server(
            (host, port),
            rest=self.rest,
            faults=self.faults,
            controls=self.controls,
            token=self.token,
        )
        srv.write_log = self.write_log
        srv.watch_bookmark_interval = self._bookmark_interval
        self._server = srv
        self._thread = threading.Thread(
            target=srv.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="emulator-http",
            daemon=True,
        )
        self._thread.start()
        logger.info("emulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, close idle keep-alive connections and stop background writers."""
        for writer in list(self._writers.values()):
            writer.stop()
        self._writers.clear()
        srv, self._server = self._server, None
        if srv is None:
            return
        self.store.events.close_all(abrupt=True)  # open watches die with the server
        srv.shutdown()
        srv.close_connections()
        srv.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Emulator:
        return self if self._server is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("emulator not started")
        host = str(self._server.server_address[0])
        return f"http://{host}:{self.port}"

    def write_kubeconfig(self, path: str | os.PathLike[str]) -> Path:
        """Write a kubeconfig (context ``emulator``, plain http) pointing here."""
        user: dict[str, Any] = {"token": self.token} if self.token else {}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "emulator", "user": user}],
            "contexts": [
                {"name": "emulator", "context": {"cluster": "emulator", "user": "emulator"}}
            ],
            "current-context": "emulator",
        }
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(config, indent=2))  # JSON is YAML; rename makes it atomic
        tmp.replace(target)
        return target

    # --- faults, latency, counters -------------------------------------------------------

    def inject(self, method: str, path_regex: str, **options: Unpack[faults.FaultOptions]) -> int:
        """Make the next ``times`` matching requests fail, stall or drop; returns a rule id.

        ``method`` is an HTTP method or ``*``; ``path_regex`` is searched in the
        path. ``status=None`` with ``delay_s`` only delays. See faults.py.
        """
        return self.faults.add(method, path_regex, **options).id

    def clear_faults(self) -> None:
        self.faults.clear()

    def set_latency(self, ms: float) -> None:
        """Delay every API request (not control requests) by ``ms`` milliseconds."""
        self.faults.latency_s = ms / 1000

    def counters(self) -> dict[tuple[str, str], int]:
        """Requests served, by (Kubernetes verb, resource), e.g. ("patch", "nodes")."""
        return self.faults.counters()

    def request_log(self) -> list[faults.RequestRecord]:
        """Every request served, oldest first, with the tick header it carried."""
        return self.faults.request_log()

    def reset_counters(self) -> None:
        self.faults.reset_counters()

    # --- watches (watch.py) --------------------------------------------------------------

    def close_watches(self, *, abrupt: bool = False) -> None:
        """End every open watch stream: cleanly (final chunk) or by dropping the socket."""
        self.store.events.close_all(abrupt=abrupt)

    def set_bookmark_interval(self, seconds: float) -> None:
        self._bookmark_interval = seconds
        if self._server is not None:
            self._server.watch_bookmark_interval = seconds

    # --- state ---------------------------------------------------------------------------

    def install_crd(self) -> None:
        """(Re)install the shipped NodePowerProfile, NodeTwin and NodeHardware CRDs, which
        serve them."""
        self.store.put(resources.CRDS, crd_manifest_with_status())
        self.store.put(resources.CRDS, crd_manifest_with_status("nodetwins.yaml"))
        self.store.put(resources.CRDS, crd_manifest_with_status("nodehardwares.yaml"))

    def compact(self) -> None:
        """Compact history like etcd: continue tokens minted before now answer 410, and so
        does a watch resuming from an older resourceVersion."""
        self.store.compact()

    def reset(self) -> None:
        """Forget every object, rule and counter; reinstall the CRD if configured."""
        self.store.clear()
        self.faults.clear()
        self.faults.reset_counters()
        if self._install_crd:
            self.install_crd()

    def load(self, nodes: Iterable[store.Obj] = (), pods: Iterable[store.Obj] = ()) -> None:
        """Bulk insert (or replace) nodes and pods, taking ownership of the dicts."""
        self.store.load(resources.NODES, nodes)
        self.store.load(resources.PODS, pods)

    def seed(
        self, nodes: int, pods_per_node: float, *, seed: int, **options: Any
    ) -> seeding.Cluster:
        """Generate a cluster with ``seed.generate_cluster`` (same options) and load it."""
        cluster = seeding.generate_cluster(nodes, pods_per_node, seed=seed, **options)
        counts = (len(cluster.nodes), len(cluster.pods))
        self.load(cluster.nodes, cluster.pods)
        logger.info("emulator: seeded %d nodes and %d pods", *counts)
        return cluster

    def put_object(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace an object out of band (no admission checks); returns it."""
        res = _resource_of(obj)
        copy = json.loads(json.dumps(obj))
        if res is resources.EVENTS_V1:
            copy = conversion.event_to_core(copy)
        return self.store.put(res, copy).copy()

    def delete_object(self, resource: str, name: str, namespace: str | None = None) -> bool:
        """Delete out of band; False when it did not exist."""
        res = resources.resolve(resource)
        try:
            self.store.delete(res, namespace, name)
        except errors.ApiError:
            return False
        return True

    def get_object(
        self, resource: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        entry = self.store.get(resources.resolve(resource), namespace, name)
        return None if entry is None else entry.copy()

    def get_node(self, name: str) -> dict[str, Any]:
        """A copy of the stored node; KeyError when missing."""
        node = self.get_object("nodes", name)
        if node is None:
            raise KeyError(name)
        return node

    def list_objects(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Copies of every stored object of a resource, in key order."""
        return [e.copy() for e in self.store.objects(resources.resolve(resource), namespace)]

    def mutate_node_labels(self, name: str, labels: Mapping[str, str | None]) -> dict[str, Any]:
        """Merge ``labels`` into a node's labels (None removes), bumping its resourceVersion."""

        def change(node: store.Obj) -> None:
            current = node["metadata"].setdefault("labels", {})
            for key, value in labels.items():
                if value is None:
                    current.pop(key, None)
                else:
                    current[key] = value

        try:
            return self.store.mutate(resources.NODES, None, name, change).copy()
        except errors.ApiError as e:
            raise KeyError(name) from e

    def concurrent_writer(
        self, node: str, *, interval_ms: float = 5, label_key: str = CHURN_LABEL
    ) -> ConcurrentWriter:
        """Start rewriting ``label_key`` on ``node`` every ``interval_ms`` until ``.stop()``."""
        writer = ConcurrentWriter(self, node, interval_ms=interval_ms, label_key=label_key)
        self._writers[writer.id] = writer
        return writer

    def stop_writer(self, writer_id: int) -> int:
        """Stop a writer by id (as returned over HTTP); returns its write count."""
        return self._writers.pop(writer_id).stop()


def _resource_of(obj: Mapping[str, Any]) -> resources.Resource:
    res = resources.by_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    if res is None:
        raise KeyError(f"unsupported kind {obj.get('apiVersion')}/{obj.get('kind')}")
    return res


def crd_manifest_with_status(file: str = "nodepowerprofiles.yaml") -> dict[str, Any]:
    """The CRD as the server would store it (status: names accepted, established)."""
    obj = crd_manifest(file)
    api.default_crd(obj)
    return obj
