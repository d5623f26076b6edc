"""Shared test wiring: markers by directory, the real control plane, and the fixtures
of the tiers that start real processes (integration, deploy, chaos).

Tests under ``tests/unit`` (core, workflow over the in-memory store, adapters, queue,
cli) get the ``unit`` marker; ``tests/integration``, ``tests/contract`` (the StateStore
contract over memory and a real redis-server) and ``tests/deploy`` the ``integration``
marker; ``tests/chaos`` ``chaos``; so each group runs alone (``pytest -m unit``,
``pytest -m integration``); ``tests/compose`` (the docker-compose stack on podman)
``compose``. Tests under ``tests/envtest``, and
every test parametrised onto the real server, carry ``envtest``.

``control_plane`` is one real etcd + kube-apiserver per test session (about 3 s to
start). Without ``KUBEBUILDER_ASSETS`` its tests are skipped with one line saying
how to get the binaries; in CI (``CI`` set) they fail instead, so the real-server
tier can never vanish silently.

The process fixtures: a private ``redis_server`` (a missing binary skips locally and
fails in CI, so a broken set-up can never pass silently), the HTTP API ``emulator``,
a ``stack`` of real worker and beat processes against both, ``cluster`` (the emulator,
then the real server) behind a recording proxy, the operator's ``state`` store,
``ticks`` sent like beat sends them, a ``sentinel_cluster`` with its ``sentinel_stack``
and ``sentinel_state``. What they build on is test-bed library code (joulie_testbed).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
import yaml
from kubernetes import client as k8s

from joulie_tasks.adapters import store
from joulie_testbed import sentinel
from joulie_testbed.controlplane import HOW_TO_GET_ASSETS, ControlPlane, find_assets
from joulie_testbed.emulator import Emulator
from joulie_testbed.procs import RedisServer, Stack, wait_for
from joulie_testbed.ticks import TickClient
from tests import CALL_REPORT, REPO
from tests.integration.apiproxy import ApiProxy
from tests.integration.cluster import ClusterBed

#: Folder under tests/ → the group (marker) its tests belong to.
_GROUPS = {
    "unit": "unit",
    "integration": "integration",
    "contract": "integration",
    "deploy": "integration",
    "chaos": "chaos",
    "envtest": "envtest",
    "compose": "compose",
}
_TESTS = Path(__file__).resolve().parent


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        setattr(item, CALL_REPORT, report)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).resolve().relative_to(_TESTS).parts
        for folder in parts[:1]:
            if folder in _GROUPS:
                item.add_marker(getattr(pytest.mark, _GROUPS[folder]))


@pytest.fixture(scope="session")
def assets() -> Path:
    """The envtest binaries (``KUBEBUILDER_ASSETS``); skips without them, fails in CI."""
    found = find_assets()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the real-server tier: {HOW_TO_GET_ASSETS}")
        pytest.skip(HOW_TO_GET_ASSETS)
    return found


@pytest.fixture(scope="session")
def control_plane(assets: Path) -> Iterator[ControlPlane]:
    """A real etcd + kube-apiserver (RBAC, token auth, audit log) for the session."""
    plane = ControlPlane(assets).start()
    yield plane
    plane.stop()


CRD = REPO / "deploy" / "crd" / "nodepowerprofiles.yaml"
TWIN_CRD = CRD.with_name("nodetwins.yaml")
HARDWARE_CRD = CRD.with_name("nodehardwares.yaml")


@pytest.fixture
def redis_binary() -> None:
    """Skips the test when redis-server is missing; fails it in CI (``CI`` set)."""
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is required in CI (scripts/bootstrap.sh installs it)")
        pytest.skip("redis-server is not installed")


@pytest.fixture
def redis_server(tmp_path: Path, redis_binary: None) -> Iterator[RedisServer]:
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


@pytest.fixture
def ticks(redis_server: RedisServer, state: store.RedisStore) -> Iterator[TickClient]:
    client = TickClient(redis_server.url, state)
    yield client
    client.close()


@pytest.fixture
def sentinel_cluster(tmp_path: Path, redis_binary: None) -> Iterator[sentinel.SentinelCluster]:
    """A started master + two replicas + 3 Sentinels, torn down after the test."""
    cluster = sentinel.SentinelCluster(tmp_path / "sentinel")
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def sentinel_stack(
    tmp_path: Path, sentinel_cluster: sentinel.SentinelCluster, emulator: Emulator
) -> Iterator[Stack]:
    """Worker, beat and CLI runs against ``emulator`` and the Sentinel-managed Redis."""
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    server = cast(RedisServer, SimpleNamespace(url=sentinel_cluster.url))
    s = Stack(tmp=tmp_path, redis_server=server, kubeconfig=kubeconfig)
    s.configure(redis_sentinel_master=sentinel_cluster.master_name)
    yield s
    s.stop()


@pytest.fixture
def sentinel_state(sentinel_cluster: sentinel.SentinelCluster) -> Iterator[store.RedisStore]:
    """The operator's store on the Sentinel-managed Redis."""
    st = store.RedisStore(sentinel_cluster.url, sentinel_master=sentinel_cluster.master_name)
    yield st
    st.close()
