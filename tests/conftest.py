"""Shared test wiring: markers by directory, and the real control plane.

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
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from joulie_testbed.controlplane import HOW_TO_GET_ASSETS, ControlPlane, find_assets

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).resolve().relative_to(_TESTS).parts
        for folder in parts[:1]:
            if folder in _GROUPS:
                item.add_marker(getattr(pytest.mark, _GROUPS[folder]))


def require_assets() -> Path:
    assets = find_assets()
    if assets is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the real-server tier: {HOW_TO_GET_ASSETS}")
        pytest.skip(HOW_TO_GET_ASSETS)
    return assets


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """A real etcd + kube-apiserver (RBAC, token auth, audit log) for the session."""
    plane = ControlPlane(require_assets()).start()
    yield plane
    plane.stop()
