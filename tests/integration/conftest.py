"""Fixtures for integration tests: a private redis-server, the HTTP API emulator,
and a Stack that starts real worker and beat processes against both.

Real redis-server is required: locally a missing binary skips these tests, in CI
(``CI=true``) it fails them, so a broken set-up can never pass silently.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from celery import Celery
from kubernetes import client as k8s

from joulie_tasks.adapters import store
from joulie_tasks.core import guard
from joulie_testbed.controlplane import ControlPlane
from joulie_testbed.emulator import Emulator
from joulie_testbed.procs import RedisServer, Stack, wait_for
from tests.integration.apiproxy import ApiProxy
from tests.integration.cluster import ClusterBed

CRD = Path(__file__).resolve().parents[2] / "deploy" / "crd" / "nodepowerprofiles.yaml"
TWIN_CRD = CRD.with_name("nodetwins.yaml")
HARDWARE_CRD = CRD.with_name("nodehardwares.yaml")


def _require_redis() -> None:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is required in CI (scripts/bootstrap.sh installs it)")
        pytest.skip("redis-server is not installed")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    _require_redis()
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emu = Emulator().start()
    yield emu
    emu.stop()


@pytest.fixture
def stack(tmp_path: Path, redis_server: RedisServer, emulator: Emulator) -> Iterator[Stack]:
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    s = Stack(tmp=tmp_path, redis_server=redis_server, kubeconfig=kubeconfig)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def real_server(control_plane: ControlPlane) -> ControlPlane:
    """The session's real kube-apiserver with the shipped CRDs installed and Established."""
    with control_plane.api_client() as api:
        ext = k8s.ApiextensionsV1Api(api)
        for path in (CRD, TWIN_CRD, HARDWARE_CRD):
            body = yaml.safe_load(path.read_text())
            try:
                ext.create_custom_resource_definition(body)
            except k8s.ApiException as e:
                if e.status != 409:
                    raise

            def established(name: str = body["metadata"]["name"]) -> bool:
                crd = ext.read_custom_resource_definition(name)
                conditions = crd.status.conditions or []
                return any(c.type == "Established" and c.status == "True" for c in conditions)

            wait_for(established, what=f"the CRD {path.name} to be Established")
    return control_plane


def _kubeconfig(path: Path, *, server: str, token: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return path


@pytest.fixture(params=["emulator", pytest.param("real", marks=pytest.mark.envtest)])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClusterBed]:
    """An empty cluster on the emulator, then on the real kube-apiserver (``envtest``).

    The operator reaches it through a recording proxy (``ClusterBed.counters``)."""
    emu: Emulator | None = None
    if request.param == "emulator":
        emu = Emulator().start()
        conf = k8s.Configuration()
        conf.host = emu.url
        api, upstream, ca, token = k8s.ApiClient(conf), emu.url, None, "test"
    else:
        plane: ControlPlane = request.getfixturevalue("real_server")
        api, upstream, ca = plane.api_client(), plane.server, plane.ca_file
        token = plane.admin_token
    proxy = ApiProxy(upstream, ca_file=ca).start()
    kubeconfig = _kubeconfig(tmp_path / "kubeconfig", server=proxy.url, token=token)
    bed = ClusterBed(backend=request.param, api=api, proxy=proxy, kubeconfig=kubeconfig)
    bed.wipe()
    yield bed
    bed.wipe()
    proxy.stop()
    api.close()
    if emu is not None:
        emu.stop()


@pytest.fixture
def cluster_stack(
    tmp_path: Path, redis_server: RedisServer, cluster: ClusterBed
) -> Iterator[Stack]:
    """Workers, beat and CLI runs against ``cluster`` (through its proxy)."""
    s = Stack(tmp=tmp_path, redis_server=redis_server, kubeconfig=cluster.kubeconfig)
    yield s
    s.stop()


@pytest.fixture
def state(redis_server: RedisServer) -> Iterator[store.RedisStore]:
    st = store.RedisStore(redis_server.url)
    yield st
    st.close()


class TickClient:
    """Sends tick messages like beat does (JSON, through the broker) and awaits them."""

    def __init__(self, redis_url: str, state: store.RedisStore) -> None:
        self.app = Celery("joulie-test-client", broker=redis_url)
        self.app.conf.update(task_serializer="json", accept_content=["json"])
        self.state = state

    def send(self, *, dedup: bool = False, scheduled_at: float | None = None, **opts: Any) -> float:
        at = scheduled_at if scheduled_at is not None else time.time()
        self.app.send_task("joulie.tick", kwargs={"scheduled_at": at, "dedup": dedup}, **opts)
        return at

    def finished(self, at: float) -> dict[str, Any] | None:
        summaries = self.state.tick_summaries()
        return next((t.model_dump(mode="json") for t in summaries if t.tick_time == at), None)

    def run(self, *, timeout: float = 60.0) -> dict[str, Any]:
        """Send one manual tick and wait until it has finished; return its summary."""
        at = self.send()
        return wait_for(lambda: self.finished(at), timeout=timeout, what=f"tick at {at}")

    def counter(self, name: str, **labels: str) -> float:
        from joulie_tasks.ports import metrics

        counters, _ = self.state.metric_values()
        return counters.get(metrics.field(name, **labels), 0.0)


@pytest.fixture
def ticks(redis_server: RedisServer, state: store.RedisStore) -> Iterator[TickClient]:
    client = TickClient(redis_server.url, state)
    yield client
    client.app.close()


def cluster_state(emulator: Emulator | ClusterBed, node: str) -> str:
    """The node's state as its labels show it (the truth the FSM must never contradict)."""
    labels = emulator.get_node(node)["metadata"].get("labels", {})
    return guard.read_node_state(
        labels, profile_label="joulie.io/power-profile", draining_label="joulie.io/draining"
    ).value
