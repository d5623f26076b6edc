"""The real control plane fixture itself: version, RBAC in force, audit log, and no
process left behind when the test session is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client as k8s

from joulie_testbed.controlplane import ControlPlane
from joulie_testbed.procs import wait_for

REPO = Path(__file__).resolve().parents[2]


def test_the_server_is_kube_apiserver_1_36_with_rbac_and_an_audit_log(
    control_plane: ControlPlane,
) -> None:
    version = json.loads(control_plane.get_raw("/version"))
    assert (version["major"], version["minor"]) == ("1", "36")

    mark = control_plane.audit_mark()
    with (
        control_plane.api_client(token="not-a-known-token") as api,
        pytest.raises(k8s.ApiException) as denied,
    ):
        k8s.CoreV1Api(api).list_node()
    assert denied.value.status == 401

    with control_plane.api_client() as api:
        k8s.CoreV1Api(api).list_node()
    events = wait_for(
        lambda: [e for e in control_plane.audit_events(since=mark) if e["verb"] == "list"],
        what="the admin's list in the audit log",
    )
    assert events[-1]["objectRef"]["resource"] == "nodes"
    assert events[-1]["user"]["username"] == "admin"


_CHILD = """
import os, sys, time
from pathlib import Path
from joulie_testbed.controlplane import ControlPlane
plane = ControlPlane(Path(os.environ["KUBEBUILDER_ASSETS"])).start()
print(" ".join(str(p) for p in plane.pids().values()), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose: it runs nothing
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.slow
@pytest.mark.usefixtures("assets")
def test_killing_the_test_process_leaves_no_control_plane_process_behind() -> None:
    # Given a test process that started a control plane
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    pids = [int(p) for p in child.stdout.readline().split()]
    assert len(pids) == 2
    assert all(_alive(p) for p in pids)

    # When it is killed without any chance to clean up
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()

    # Then etcd and kube-apiserver die with it
    wait_for(lambda: not any(_alive(p) for p in pids), timeout=15, what="orphans to exit")
