"""The compose ``sentinel`` profile: the master container killed, ticks go on without it.

The stack runs the profile exactly as compose/sentinel.env does (a Redis master, two
replicas, three Sentinels; every operator process on a ``sentinel://`` URL) with 50
managed nodes. ``docker kill`` of the master container, then a burst of performance pods:
the watcher on the new master kicks a tick that applies them, with no beat tick in
between, so the time from the kill to the applied burst is the operator's recovery time.
Then the old master comes back and rejoins as a replica.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Iterator

import pytest

from tests.compose.stack import INTERVAL_S, Stack, running, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

NODES = 50
SENTINELS = "sentinel://sentinel-1:26379;sentinel://sentinel-2:26379;sentinel://sentinel-3:26379/0"


@pytest.fixture(scope="module")
def sentinel_stack(images: dict[str, str]) -> Iterator[Stack]:
    env = {
        **images,
        "COMPOSE_PROFILES": "sentinel",
        "REDIS_URL": SENTINELS,
        "REDIS_SENTINEL_MASTER": "joulie",
    }
    with running(Stack(f"joulie-ci-sentinel-{os.getpid()}", env, nodes=NODES)) as s:
        yield s


def role(stack: Stack, host: str) -> str:
    """``master`` or ``slave``, as the Redis server ``host`` says (asked from a Sentinel)."""
    out = stack.compose("exec", "-T", "sentinel-1", "redis-cli", "-h", host, "role", check=False)
    return out.split()[0] if out.strip() else ""


def master(stack: Stack) -> str:
    out = stack.exec(
        "sentinel-1", "redis-cli", "-p", "26379", "sentinel", "get-master-addr-by-name", "joulie"
    )
    return out.split()[0]


def test_the_master_container_killed_and_not_back_ticks_resume_on_a_replica(
    sentinel_stack: Stack, row: list[str]
) -> None:
    stack = sentinel_stack
    wait_for("50 nodes converged, all eco", lambda: stack.cluster_converged(0), timeout=240)
    assert master(stack) == "redis-master"
    assert role(stack, "redis-replica-1") == "slave"
    assert role(stack, "redis-replica-2") == "slave"

    (victim,) = stack.containers("redis-master")
    stack.compose("kill", "redis-master")  # SIGKILL, as `docker kill`
    killed = time.monotonic()
    core = stack.core()
    for i in range(10):
        core.create_namespaced_pod(
            "default",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"after-kill-{i}", "labels": {"app": "after-kill"}},
                "spec": {
                    "nodeSelector": {"joulie.io/power-profile": "performance"},
                    "containers": [{"name": "c", "image": "registry.invalid/none:0"}],
                },
            },
        )
    wait_for(
        "10 nodes performance after the failover",
        lambda: collections.Counter(stack.profiles_by_node().values())["performance"] == 10,
        timeout=INTERVAL_S * 4,
        every=0.2,
    )
    recovery = time.monotonic() - killed
    new_master = master(stack)
    print(f"compose sentinel: master lost; burst applied {recovery:.1f} s later via {new_master}")
    assert new_master in {"redis-replica-1", "redis-replica-2"}
    assert stack.containers("redis-master") == [], f"{victim} came back by itself"
    assert wait_for("all converged", lambda: stack.cluster_converged(10), timeout=120)

    stack.compose("start", "redis-master")
    wait_for(
        "the old master back as a replica",
        lambda: role(stack, "redis-master") == "slave",
        timeout=120,
    )
    assert master(stack) == new_master
    row += [
        "Sentinel profile: `docker kill` of the master container",
        f"{NODES} nodes converged; master container SIGKILLed and left down; 10 performance "
        "pods created at once",
        f"{new_master} promoted; the watcher kicked a tick that applied the burst "
        f"{recovery:.1f} s after the kill (down-after 5 s); the old master, started again, "
        "rejoined as a replica",
    ]
