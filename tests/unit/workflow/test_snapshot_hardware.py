"""The snapshot stage reads NodeHardware only when asked (docs/SPEC.md §13.10), and a
cluster without the CRD counts as having none."""

from __future__ import annotations

import pytest

from joulie_tasks import errors
from joulie_tasks.workflow import snapshot
from tests.fakes import FakeKube

HARDWARE = {
    "apiVersion": "joulie.io/v1alpha1",
    "kind": "NodeHardware",
    "metadata": {"name": "a-example-com"},
    "spec": {"nodeName": "a.example.com"},
    "status": {"cpu": {"rawModel": "AMD EPYC 9654", "sockets": 2}},
}


def take(kube: FakeKube, *, read_hardware: bool) -> tuple[str, ...]:
    snap = snapshot.take_snapshot(
        gateway=kube, tick_time=0.0, tick_id="t", page_size=50, read_hardware=read_hardware
    )
    return tuple(h.node_name for h in snap.hardware)


def test_nodehardware_is_listed_only_when_read() -> None:
    kube = FakeKube()
    kube.add("nodehardwares", HARDWARE)
    assert take(kube, read_hardware=False) == ()
    assert take(kube, read_hardware=True) == ("a.example.com",)


def test_a_missing_crd_counts_as_no_nodehardware_but_a_403_fails_the_read() -> None:
    kube = FakeKube()
    kube.add("nodehardwares", HARDWARE)
    kube.fail("list", "nodehardwares", errors.KubeFatal("404 not found", status=404))
    assert take(kube, read_hardware=True) == ()
    kube.fail("list", "nodehardwares", errors.KubeFatal("403 forbidden", status=403))
    with pytest.raises(errors.KubeFatal):
        take(kube, read_hardware=True)
