"""The compose stack as a test drives it: ``Stack`` (docker-compose commands, the published
ports through the official client, Redis, the metrics endpoint), ``running`` (up, then
``down -v``), and the podman and tool checks. The fixtures are tests/compose/conftest.py's.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from kubernetes import client as k8s

from joulie_testbed.controlplane import find_assets
from joulie_testbed.procs import free_port, read_url

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "joulie-compose-admin-token"
NODES = 200
INTERVAL_S = 20.0
HOW_TO_GET = (
    "compose tier skipped: podman and docker-compose are needed "
    "(apt-get install podman debootstrap docker-compose; .ci/run does it)"
)

T = TypeVar("T")


def require_tools() -> Path:
    """The KUBEBUILDER_ASSETS folder, or skip (fail under CI) without the tools."""
    missing = [t for t in ("podman", "docker-compose", "debootstrap") if shutil.which(t) is None]
    assets = find_assets()
    if missing or assets is None:
        why = HOW_TO_GET if missing else "compose tier skipped: KUBEBUILDER_ASSETS is not set"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the compose tier: {why}")
        pytest.skip(why)
    return assets


def podman_env() -> dict[str, str]:
    """DOCKER_HOST and CONTAINERS_CONF after compose/podman.sh has set podman up."""
    done = subprocess.run(
        ["bash", "-c", ". compose/podman.sh && podman_ready && env -0"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=600,
    )
    env = dict(item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)
    return {k: env[k] for k in ("DOCKER_HOST", "CONTAINERS_CONF")}


def wait_for(what: str, probe: Callable[[], T | None], *, timeout: float, every: float = 0.5) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except Exception as exc:  # not yet; kept for the failure message
            last = exc
        else:
            if value:
                return value
            last = value
        time.sleep(every)
    pytest.fail(f"{what}: not within {timeout:.0f} s (last: {last!r})")


class Stack:
    """One compose project of the repository's stack, and the ways a test reaches it."""

    def __init__(self, project: str, env: dict[str, str], *, nodes: int = NODES) -> None:
        self.project = project
        self.nodes = nodes
        self.metrics_port = free_port()
        self.env = {
            **os.environ,
            **env,
            "COMPOSE_PROJECT_NAME": project,
            "METRICS_PORT": str(self.metrics_port),
            "CI_RECONCILE_INTERVAL": f"{INTERVAL_S:.0f}s",
            "FAKE_NODES": str(nodes),
        }
        self._redis: redis.Redis | None = None
        self.up_started = 0.0
        self._api: k8s.ApiClient | None = None

    # -- docker-compose ----------------------------------------------------------------
    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        files = ["-f", "docker-compose.yml", "-f", "compose/ci.yml"]
        done = subprocess.run(
            ["docker-compose", "-p", self.project, *files, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            pytest.fail(f"docker-compose {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout + done.stderr

    def podman(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            ["podman", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        return done.stdout

    def containers(self, service: str) -> list[str]:
        """Names of the running containers of ``service``, e.g. ``proj_worker_1``."""
        out = self.podman(
            "ps",
            "--filter",
            f"label=com.docker.compose.project={self.project}",
            "--filter",
            f"label=com.docker.compose.service={service}",
            "--format",
            "{{.Names}}",
        )
        return sorted(out.split())

    def port(self, service: str, port: int) -> int:
        text = self.compose("port", service, str(port)).strip().splitlines()[-1]
        return int(text.rsplit(":", 1)[1])

    def exec(self, service: str, *argv: str) -> str:
        return self.compose("exec", "-T", service, *argv, timeout=120)

    # -- what runs inside ----------------------------------------------------------------
    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis.Redis(
                port=self.port("redis", 6379), decode_responses=True, socket_timeout=10
            )
        return self._redis

    def api(self) -> k8s.ApiClient:
        if self._api is None:
            conf = k8s.Configuration()
            conf.host = f"https://127.0.0.1:{self.port('k3s', 6443)}"
            conf.ssl_ca_cert = str(self.ca_file())
            conf.api_key = {"authorization": TOKEN}
            conf.api_key_prefix = {"authorization": "Bearer"}
            self._api = k8s.ApiClient(conf)
        return self._api

    def ca_file(self) -> Path:
        """The control plane's CA, from the kubeconfig it wrote into the shared volume."""
        path = Path(tempfile.gettempdir()) / f"{self.project}-ca.crt"
        if not path.exists():
            kubeconfig = self.exec("k3s", "cat", "/kube/kubeconfig.yaml")
            data = re.search(r"certificate-authority-data: (\S+)", kubeconfig)
            assert data, kubeconfig
            path.write_bytes(base64.b64decode(data[1]))
        return path

    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api())

    def profiles_by_node(self) -> dict[str, str]:
        """Every managed node's ``joulie.io/power-profile`` label (missing: "")."""
        nodes = self.core().list_node(label_selector="joulie.io/managed=true").items
        return {
            n.metadata.name: (n.metadata.labels or {}).get("joulie.io/power-profile", "")
            for n in nodes
        }

    def npp_profiles(self) -> dict[str, str]:
        objs = k8s.CustomObjectsApi(self.api()).list_cluster_custom_object(
            "joulie.io", "v1alpha1", "nodepowerprofiles"
        )["items"]
        return {o["spec"]["nodeName"]: o["spec"]["profile"] for o in objs}

    def fsm(self) -> dict[str, dict[str, Any]]:
        return {k: json.loads(v) for k, v in self.redis().hgetall("joulie:fsm").items()}

    def ticks(self) -> list[dict[str, Any]]:
        """Finished ticks, oldest first (the operator's ``joulie:recent-ticks``)."""
        raw = self.redis().lrange("joulie:recent-ticks", 0, -1)
        return sorted((json.loads(r) for r in raw), key=lambda t: t["tick_time"])

    def metrics_text(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        return read_url(url, timeout=10).decode()

    def apiserver_writes(self) -> float:
        """Mutating requests the control plane served on nodes and profiles, in total."""
        request = urllib.request.Request(
            f"https://127.0.0.1:{self.port('k3s', 6443)}/metrics",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        context = ssl.create_default_context(cafile=str(self.ca_file()))
        text = read_url(request, context=context, timeout=10).decode()
        total = 0.0
        for line in text.splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels, _, value = line.rpartition(" ")
            if 'verb="GET"' in labels or 'verb="LIST"' in labels or 'verb="WATCH"' in labels:
                continue
            if 'resource="nodes"' in labels or 'resource="nodepowerprofiles"' in labels:
                total += float(value)
        return total

    # -- states the tests wait for -----------------------------------------------------
    def cluster_converged(self, performance: int) -> dict[str, str] | None:
        """Each node's profile once the first ``performance`` nodes are performance and
        the rest eco, on the node labels and the NodePowerProfiles alike."""
        names = sorted(self.profiles_by_node())
        if len(names) != self.nodes:
            return None
        want = {n: ("performance" if i < performance else "eco") for i, n in enumerate(names)}
        if self.profiles_by_node() != want or self.npp_profiles() != want:
            return None
        return want

    def converged(self, performance: int) -> dict[str, Any] | None:
        """The last tick, once the cluster is converged (:meth:`cluster_converged`), the
        FSM says the same and that tick planned no write."""
        want = self.cluster_converged(performance)
        if want is None:
            return None
        fsm = self.fsm()
        if {n: r.get("profile") for n, r in fsm.items()} != want:
            return None
        ticks = self.ticks()
        if not ticks or ticks[-1]["writes_planned"] != 0 or ticks[-1]["failures"]:
            return None
        return ticks[-1]

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
        if self._api is not None:
            self._api.close()


@contextlib.contextmanager
def running(stack: Stack, *up: str) -> Iterator[Stack]:
    """``stack`` brought up with ``docker-compose up -d *up``; ``down -v`` afterwards."""
    stack.compose("down", "-v", "--remove-orphans", check=False)
    stack.up_started = time.monotonic()
    stack.compose("up", "-d", *up, timeout=600)
    try:
        yield stack
    finally:
        stack.close()
        stack.compose("down", "-v", "--remove-orphans", "-t", "5", check=False, timeout=300)
