"""Property: for any cluster reached by any event sequence, a cache-fed tick decides
exactly what a list-fed tick decides (demand, plan, guarded plan, writes).

The cache is fed through the watcher's own code (``_Stream.relist`` and
``_Stream.handle``, the Lua scripts on a real redis-server) with generated
ADDED/MODIFIED/DELETED events — pods changing shape, node, phase and deletion
state, nodes relabelled, cordoned and removed, profile objects edited — with
relists at random points. The list-fed side is ``snapshot.take_snapshot`` over the
same final objects. A second property: after any sequence, the incremental counts
equal those of a fresh relist (O(1) bookkeeping never drifts).
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from joulie_tasks import config, ports
from joulie_tasks.adapters import cache_store, clients, store
from joulie_tasks.core import decide
from joulie_tasks.workflow import snapshot, watcher
from joulie_testbed.emulator import seed as seeding
from joulie_testbed.procs import RedisServer
from tests.fakes import FakeKube

pytestmark = pytest.mark.slow

NODES = [f"node-{i}" for i in range(5)]
PODS = [f"pod-{i}" for i in range(10)]
PROFILE = "joulie.io/power-profile"


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is required (scripts/bootstrap.sh installs it)")
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            yield server.url
        finally:
            server.stop()


node_objects = st.builds(
    lambda name, managed, reserved, profile, draining, cordoned: seeding.make_node(
        name,
        labels={
            k: v
            for k, v in {
                "joulie.io/managed": managed,
                "joulie.io/reserved": reserved,
                PROFILE: profile,
                "joulie.io/draining": draining,
                "unrelated": "x",
            }.items()
            if v is not None
        },
        unschedulable=cordoned,
    ),
    st.sampled_from(NODES),
    st.sampled_from(["true", "true", "true", "false", None]),
    st.sampled_from([None, None, "true", "false"]),
    st.sampled_from([None, "performance", "eco", "draining-performance", "bogus"]),
    st.sampled_from([None, "true", "false"]),
    st.booleans(),
)


def _pod(name: str, shape: str, node: str | None, phase: str, deleting: bool) -> dict[str, Any]:
    pod = seeding.make_pod(name, namespace="ns", shape=shape, node=node, phase=phase)
    if deleting:
        pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return pod


pod_objects = st.builds(
    _pod,
    st.sampled_from(PODS),
    st.sampled_from(sorted(seeding.SHAPES)),
    st.sampled_from([None, *NODES]),
    st.sampled_from(["Pending", "Running", "Running", "Succeeded", "Failed", "Unknown"]),
    st.booleans(),
)

npp_objects = st.builds(
    lambda node, profile, cap, owned: {
        "apiVersion": "joulie.io/v1alpha1",
        "kind": "NodePowerProfile",
        "metadata": {
            "name": node,
            "labels": {"joulie.io/managed-by": "operator"} if owned else {},
        },
        "spec": {
            "nodeName": node,
            "profile": profile,
            "cpu": {"packagePowerCapWatts": cap},
            "policy": {"name": "static_partition"},
        },
    },
    st.sampled_from([*NODES, "gone-node"]),
    st.sampled_from(["performance", "eco"]),
    st.sampled_from([120, 5000]),
    st.booleans(),
)

operations = st.lists(
    st.one_of(
        st.tuples(st.just("nodes"), st.just("put"), node_objects),
        st.tuples(st.just("nodes"), st.just("delete"), st.sampled_from(NODES)),
        st.tuples(st.just("pods"), st.just("put"), pod_objects),
        st.tuples(st.just("pods"), st.just("put"), pod_objects),
        st.tuples(st.just("pods"), st.just("delete"), st.sampled_from(PODS)),
        st.tuples(st.just("nodepowerprofiles"), st.just("put"), npp_objects),
        st.tuples(st.just("nodepowerprofiles"), st.just("delete"), st.sampled_from(NODES)),
        st.tuples(
            st.sampled_from(["nodes", "pods", "nodepowerprofiles"]), st.just("relist"), st.none()
        ),
    ),
    max_size=40,
)

policies = st.fixed_dictionaries(
    {
        "POLICY_TYPE": st.sampled_from(["static_partition", "queue_aware_v1"]),
        "STATIC_HP_FRAC": st.sampled_from(["0", "0.3", "0.5", "1"]),
        "QUEUE_HP_BASE_FRAC": st.sampled_from(["0", "0.4"]),
        "QUEUE_HP_MIN": st.sampled_from(["0", "1"]),
        "QUEUE_PERF_PER_HP_NODE": st.sampled_from(["1", "2"]),
    }
)


class _Cluster:
    """The objects as the API server holds them, and the events it would send."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, dict[str, Any]]] = {
            "nodes": {},
            "pods": {},
            "nodepowerprofiles": {},
        }
        self.rv = itertools.count(1)

    def change(self, resource: str, op: str, value: Any) -> dict[str, Any] | None:
        table = self.objects[resource]
        if op == "put":
            obj = dict(value)
            obj["metadata"] = {**obj["metadata"], "resourceVersion": str(next(self.rv))}
            kind = "MODIFIED" if obj["metadata"]["name"] in table else "ADDED"
            table[obj["metadata"]["name"]] = obj
            return {"type": kind, "object": obj}
        if value not in table:
            return None
        gone = dict(table.pop(value))
        gone["metadata"] = {**gone["metadata"], "resourceVersion": str(next(self.rv))}
        return {"type": "DELETED", "object": gone}

    def kube(self) -> FakeKube:
        fake = FakeKube()
        for resource, table in self.objects.items():
            for obj in table.values():
                fake.add(resource, obj)
        return fake


def _session(url: str, cfg: config.Settings, kube: FakeKube) -> watcher._Session:
    state = store.RedisStore(url)
    state.client.flushdb()
    cs = clients.cache(state)
    lease = cs.acquire_lease("test", ttl_s=60)
    assert lease is not None
    session = watcher._Session(
        settings=cfg,
        cache_=cs,
        state=state,
        gateway=kube,  # type: ignore[arg-type]
        lease=lease,
        holder="test",
        server=cs.server(),
        kick=lambda: None,
        counts=watcher._Counts(),
    )
    for stream in session.streams:
        stream.relist("start")
    return session


def _feed(
    url: str,
    cfg: config.Settings,
    ops: list[tuple[str, str, Any]],
    *,
    around: Callable[[watcher._Session, str], AbstractContextManager[None]] | None = None,
) -> _Cluster:
    """Feed ``ops`` to a fresh cache; ``around(session, op)`` wraps each one."""
    cluster = _Cluster()
    session = _session(url, cfg, cluster.kube())
    streams = {s.name: s for s in session.streams}
    for resource, op, value in ops:
        with around(session, op) if around is not None else contextlib.nullcontext():
            if op == "relist":
                session.gateway = cluster.kube()  # type: ignore[assignment]
                streams[resource].relist("test")
                continue
            event = cluster.change(resource, op, value)
            if event is not None:
                streams[resource].handle(event)
    session.cache.heartbeat(session.lease, "test", time.time())
    session.state.close()
    return cluster


FEW = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FEW
@given(ops=operations, policy=policies)
def test_cache_fed_and_list_fed_ticks_decide_the_same(
    redis_url: str, ops: list[tuple[str, str, Any]], policy: dict[str, str]
) -> None:
    cfg = config.read_settings({"REDIS_URL": redis_url, **policy})
    cluster = _feed(redis_url, cfg, ops)

    listed = snapshot.take_snapshot(
        gateway=cluster.kube(), tick_time=1000.0, tick_id="t", page_size=100
    )
    expected = decide.decide(listed, settings=cfg)

    state = store.RedisStore(redis_url)
    view = clients.cache(state).read(tick_time=1000.0, now=time.time(), max_age=60)
    state.close()
    assert isinstance(view, ports.cache.CacheView), view
    assert view.demand == expected.demand
    planned = decide.plan_for(view.snapshot, view.demand, settings=cfg)
    guarded = decide.guard_for(view.snapshot, view.demand, planned, settings=cfg)
    assert planned == expected.plan
    assert guarded == expected.guarded
    assert decide.writes_for(view.snapshot, guarded, settings=cfg) == expected.writes


@FEW
@given(ops=operations)
def test_incremental_counts_equal_a_fresh_relist(
    redis_url: str, ops: list[tuple[str, str, Any]]
) -> None:
    cfg = config.read_settings({"REDIS_URL": redis_url})
    cluster = _feed(redis_url, cfg, ops)
    state = store.RedisStore(redis_url)
    keys = (cache_store.PODS, cache_store.DEMAND, cache_store.PERF, cache_store.NODES)

    def contents() -> dict[str, dict[bytes, bytes]]:
        got = {k: state.client.hgetall(k) for k in keys}
        # zero counts and absent counts are the same fact
        got[cache_store.DEMAND] = {k: v for k, v in got[cache_store.DEMAND].items() if v != b"0"}
        return got

    incremental = contents()
    _session(redis_url, cfg, cluster.kube()).state.close()
    assert contents() == incremental
    state.close()


@FEW
@given(ops=operations)
def test_the_revision_moves_whenever_the_cached_contents_do(
    redis_url: str, ops: list[tuple[str, str, Any]]
) -> None:
    """What quiet ticks rest on (docs/SPEC.md §9.10): a tick that finds the revision of
    the last converged tick finds the very contents that tick read."""
    cfg = config.read_settings({"REDIS_URL": redis_url})
    keys = (cache_store.NODES, cache_store.NPPS, cache_store.PODS, cache_store.DEMAND)

    @contextlib.contextmanager
    def checked(session: watcher._Session, op: str) -> Iterator[None]:
        def read() -> tuple[int, dict[str, dict[bytes, bytes]]]:
            contents = {k: session.state.client.hgetall(k) for k in (*keys, cache_store.PERF)}
            return session.cache.status().rev, contents

        rev, before = read()
        yield
        new_rev, after = read()
        assert new_rev >= rev
        if after != before or op == "relist":
            assert new_rev > rev

    _feed(redis_url, cfg, ops, around=checked)
