"""``python -m joulie_testbed.emulator`` as its own process, used as a worker would use it.

Covers: the ready line printed after the kubeconfig is written, seeding from the
command line, the official client loading that kubeconfig, control over HTTP,
and a clean exit on SIGTERM and SIGINT.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from joulie_testbed.emulator import RemoteEmulator

READY = re.compile(r"^emulator listening on (http://127\.0\.0\.1:\d+)$")


@pytest.fixture
def process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "joulie_testbed.emulator", "--port", "0",
         "--kubeconfig", str(kubeconfig),
         "--nodes", "20", "--pods", "100", "--seed", "3", "--reserved", "2"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()  # the ready line; bounded by the test timeout
        match = READY.match(line)
        assert match, f"unexpected first line {line!r}"
        yield proc, match.group(1), kubeconfig
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_emulator_process_serves_the_kubeconfig_and_exits_cleanly(
    process: tuple[subprocess.Popen[str], str, Path], sig: signal.Signals
) -> None:
    proc, url, kubeconfig = process
    # Given the kubeconfig the process wrote before announcing itself
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    assert cfg.host == url
    with client.ApiClient(cfg) as api:
        core = client.CoreV1Api(api)
        # Then the seeded cluster is there
        assert len(core.list_node().items) == 20
        assert len(core.list_node(label_selector="joulie.io/reserved=true").items) == 2
        assert len(core.list_pod_for_all_namespaces(limit=30).items) == 30
        # And the test controls work across processes
        remote = RemoteEmulator(url)
        remote.inject("GET", "^/api/v1/nodes$", status=500)
        with pytest.raises(client.ApiException) as err:
            core.list_node()
        assert err.value.status == 500
        assert remote.counters()[("list", "nodes")] == 3
    # When it is signalled, it exits 0
    proc.send_signal(sig)
    assert proc.wait(timeout=10) == 0
