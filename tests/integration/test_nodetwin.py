"""OUTPUT_API=nodetwin and both, on the emulator and on the real kube-apiserver (envtest).

Whole ticks in this process (``run_inline``: the same stages, lock and FSM as beat
ticks) against ``cluster``, through its recording proxy. Covers: the writes are
accepted (CRD schema, status subresource); a node name with dots gets spec and
status on one object (reference bug NODETWIN.md §10.1); a converged tick writes
nothing; the agent's ``controlStatus`` survives our status refresh; a deleted or
unmanaged node's twin is removed; the agent's view (list every twin, take the one
whose spec.nodeName is the node) finds each node's cap; requests per changed node;
the watch-fed road (twins cached: a converged tick makes no request, a deleted twin
comes back, an eco twin waits for the fresh pod list).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from joulie_tasks import config
from joulie_tasks.adapters import cache_store, clients, kube, store
from joulie_tasks.core import twin
from joulie_tasks.ports import metrics
from joulie_tasks.workflow import runner
from joulie_testbed.emulator import Emulator
from joulie_testbed.emulator import seed as seeding
from joulie_testbed.procs import RedisServer, Stack, wait_for
from joulie_testbed.ticks import TickClient
from tests.integration.cluster import ClusterBed

MANAGED = {"joulie.io/managed": "true"}
NODES = ("worker-1.example.com", "worker-2", "worker-3")  # static 0.5: 2 performance
WRITES = ("patch", "create", "update", "delete")


class Operator:
    """Ticks of one OUTPUT_API against ``cluster``, at increasing tick times."""

    def __init__(self, cluster: ClusterBed, redis_url: str, mode: str, **env: str) -> None:
        self.settings = config.read_settings(
            {
                "OUTPUT_API": mode,
                "REDIS_URL": redis_url,
                "KUBECONFIG": str(cluster.kubeconfig),
                **env,
            }
        )
        self.state = store.RedisStore(redis_url)
        self.gateway = kube.build_gateway(
            kubeconfig=str(cluster.kubeconfig), context=None, timeout=10.0, pool_size=4
        )
        self.now = time.time()

    def tick(self, *, after: float = 1.0) -> None:
        self.now += after
        runner.run_inline(
            gateway=self.gateway,
            state=self.state,
            cache=clients.cache(self.state),
            settings=self.settings,
            tick_time=self.now,
        )

    def close(self) -> None:
        self.gateway.close()
        self.state.close()


@pytest.fixture
def operator(
    request: pytest.FixtureRequest, cluster: ClusterBed, redis_server: RedisServer
) -> Iterator[Operator]:
    op = Operator(cluster, redis_server.url, getattr(request, "param", "nodetwin"))
    yield op
    op.close()


def writes(cluster: ClusterBed) -> Counter[tuple[str, str]]:
    return Counter({k: n for k, n in cluster.counters().items() if k[0] in WRITES})


def agent_view(cluster: ClusterBed, node: str) -> dict[str, Any] | None:
    """What the newest agent does: list every NodeTwin, take the first whose
    spec.nodeName is its node (NODETWIN.md, "Minimal compatible subset")."""
    for obj in cluster.list_objects("nodetwins"):
        if (obj.get("spec") or {}).get("nodeName") == node:
            return obj
    return None


def test_twins_are_written_read_by_the_agent_converge_and_follow_deletes(
    cluster: ClusterBed, operator: Operator
) -> None:
    for name in NODES:
        cluster.create_node(name, labels=MANAGED)
    operator.tick()

    twins = {o["metadata"]["name"]: o for o in cluster.list_objects("nodetwins")}
    assert sorted(twins) == ["worker-1-example-com", "worker-2", "worker-3"]
    for name in NODES:
        found = agent_view(cluster, name)
        assert found is not None, name
        label = cluster.labels(name)["joulie.io/power-profile"]
        cap = 100 if label == "performance" else 60
        assert found["spec"]["profile"] == label
        assert found["spec"]["cpu"] == {"packagePowerCapPctOfMax": cap}
        # spec and status on one object, even for the name with dots
        assert found["status"]["schedulableClass"] == label
        assert found["status"]["lastUpdated"].endswith("Z")
    # One label patch, one twin create and one status patch per changed node; no profile.
    assert writes(cluster) == Counter(
        {("patch", "nodes"): 3, ("create", "nodetwins"): 3, ("patch", "nodetwins/status"): 3}
    )
    assert cluster.list_objects("nodepowerprofiles") == []

    cluster.reset_counters()
    operator.tick()
    assert writes(cluster) == Counter(), "a converged tick writes nothing"

    # The agent reports through a merge patch of status; our refresh keeps it.
    name = "worker-1-example-com"
    control = {"cpu": {"backend": "rapl", "result": "applied", "message": "", "updatedAt": "x"}}
    cluster.call(
        "PATCH",
        f"/apis/joulie.io/v1alpha1/nodetwins/{name}/status",
        body={"status": {"controlStatus": control}},
        content_type="application/merge-patch+json",
    )
    cluster.reset_counters()
    operator.tick(after=twin.STATUS_REFRESH_S)
    assert writes(cluster) == Counter({("patch", "nodetwins/status"): 3})
    refreshed = cluster.get_object("nodetwins", name)
    assert refreshed is not None
    assert refreshed["status"]["controlStatus"] == control

    cluster.delete_object("nodes", "worker-3")
    cluster.label_node("worker-2", {"joulie.io/managed": None})
    cluster.reset_counters()
    operator.tick()
    assert sorted(o["metadata"]["name"] for o in cluster.list_objects("nodetwins")) == [
        "worker-1-example-com"
    ]
    assert writes(cluster)[("delete", "nodetwins")] == 2


def test_the_agent_finds_the_gpu_cap_of_a_gpu_node_and_no_cpu_cap(
    cluster: ClusterBed, operator: Operator
) -> None:
    # Given a managed node reporting 4 allocatable GPUs (its status, as a kubelet's
    # device plugin reports it) beside a CPU-only one
    for name in ("gpu-1", "cpu-1"):
        cluster.create_node(name, labels=MANAGED)
    gpus = {"nvidia.com/gpu": "4", "cpu": "64", "memory": "256Gi", "pods": "110"}
    cluster.call(
        "PATCH",
        "/api/v1/nodes/gpu-1/status",
        body={"status": {"capacity": gpus, "allocatable": gpus}},
        content_type="application/merge-patch+json",
    )

    operator.tick()

    # Then the agent's lookup finds a per-GPU cap in percent of max on the GPU node and
    # no CPU cap there (docs/SPEC.md §13.3), and a CPU cap on the other
    for name in ("gpu-1", "cpu-1"):
        found = agent_view(cluster, name)
        assert found is not None, name
        profile = cluster.labels(name)["joulie.io/power-profile"]
        pct = 100 if profile == "performance" else 60
        assert found["spec"]["profile"] == profile
        if name == "gpu-1":
            assert found["spec"]["cpu"] == {}
            assert found["spec"]["gpu"] == {"powerCap": {"scope": "perGpu", "capPctOfMax": pct}}
            assert found["status"]["effectiveCapState"] == {"cpuPct": 100, "gpuPct": pct}
        else:
            assert found["spec"]["cpu"] == {"packagePowerCapPctOfMax": pct}
            assert "gpu" not in found["spec"]


@pytest.mark.parametrize("operator", ["both"], indirect=True)
def test_both_writes_profiles_and_twins(cluster: ClusterBed, operator: Operator) -> None:
    for name in NODES:
        cluster.create_node(name, labels=MANAGED)
    operator.tick()
    assert len(cluster.list_objects("nodepowerprofiles")) == 3
    assert len(cluster.list_objects("nodetwins")) == 3
    assert writes(cluster) == Counter(
        {
            ("patch", "nodes"): 3,
            ("create", "nodepowerprofiles"): 3,
            ("create", "nodetwins"): 3,
            ("patch", "nodetwins/status"): 3,
        }
    )
    cluster.reset_counters()
    operator.tick()
    assert writes(cluster) == Counter()


def _synced(state: store.RedisStore) -> bool:
    status = clients.cache(state).status()
    age = status.age(time.time())
    return all(status.synced.values()) and age is not None and age < 2.0


def _cache_holds_the_twins(emulator: Emulator, state: store.RedisStore) -> bool:
    """The cache's twins are the cluster's, at the same resourceVersions (our own
    writes have come back as watch events)."""
    view = clients.cache(state).read(
        tick_time=time.time(), now=time.time(), max_age=2.0, twins=True
    )
    if isinstance(view, str) or not view.twins_cached:
        return False
    cached = {t.name: t.resource_version for t in view.snapshot.twins}
    listed = {
        o["metadata"]["name"]: o["metadata"]["resourceVersion"]
        for o in emulator.list_objects("nodetwins")
    }
    return cached == listed


def _requests(emulator: Emulator) -> dict[tuple[str, str], int]:
    return {k: n for k, n in emulator.counters().items() if k[0] != "watch"}


@pytest.mark.parametrize("mode", ["nodetwin", "both"])
def test_a_converged_cache_fed_tick_makes_no_request_and_a_deleted_twin_comes_back(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore, mode: str
) -> None:
    """The watch-fed road with NodeTwin output (worker and watcher processes): the
    watcher watches the twins too, so a converged tick makes no API request at all; a
    twin deleted behind our back is recreated by the next tick from the cache."""
    for name in ("a", "b"):  # static 0.5: a performance, b eco
        emulator.put_object(seeding.make_node(name, labels=MANAGED))
    stack.configure(kick_window="1h", output_api=mode)
    stack.start_worker()
    stack.start_proc("watch", ["watch"], ready="started")
    wait_for(lambda: _synced(state), timeout=30, what="a synced, fresh cache")
    assert "nodetwins" in clients.cache(state).status().synced

    first = ticks.run()
    assert first["failures"] == {}
    assert {t["metadata"]["name"] for t in emulator.list_objects("nodetwins")} == {"a", "b"}
    wait_for(lambda: _cache_holds_the_twins(emulator, state), timeout=30, what="twins cached")

    emulator.reset_counters()
    converged = ticks.run()
    assert converged["failures"] == {}
    assert converged["written"] == 0
    assert _requests(emulator) == {}, "a converged cache-fed tick makes no request"

    assert emulator.delete_object("nodetwins", "a")
    wait_for(lambda: _cache_holds_the_twins(emulator, state), timeout=30, what="delete cached")
    emulator.reset_counters()
    again = ticks.run()
    assert again["failures"] == {}
    assert _requests(emulator) == {("create", "nodetwins"): 1, ("patch", "nodetwins/status"): 1}
    back = emulator.get_object("nodetwins", "a")
    assert back is not None
    assert back["spec"]["profile"] == "performance"
    assert back["status"]["schedulableClass"] == "performance"


def test_a_watcher_without_twins_leaves_them_to_one_list_per_tick(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore
) -> None:
    """A watcher started in nodepowerprofile mode (say, not yet rolled) does not watch
    the twins (nor the NodeHardwares); a nodetwin-mode tick still takes nodes, profiles
    and demand from its cache and lists only the twins and the NodeHardwares
    (docs/SPEC.md §13.7, §13.10)."""
    for name in ("a", "b"):
        emulator.put_object(seeding.make_node(name, labels=MANAGED))
    stack.configure(kick_window="1h", output_api="nodepowerprofile")
    stack.start_proc("watch", ["watch"], ready="started")
    wait_for(lambda: _synced(state), timeout=30, what="a synced, fresh cache")
    assert "nodetwins" not in clients.cache(state).status().synced
    stack.configure(output_api="nodetwin")
    stack.start_worker()
    assert ticks.run()["failures"] == {}
    assert {t["metadata"]["name"] for t in emulator.list_objects("nodetwins")} == {"a", "b"}

    emulator.reset_counters()
    converged = ticks.run()
    assert converged["failures"] == {}
    assert converged["written"] == 0
    assert _requests(emulator) == {("list", "nodetwins"): 1, ("list", "nodehardwares"): 1}


def test_an_annotated_pod_holds_its_node_and_an_eco_twin_waits_for_the_fresh_pod_list(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore
) -> None:
    """A pod whose only signal is the workload-class annotation reaches the cache and
    keeps its node performance; and a cache that missed a performance pod cannot get an
    eco twin spec written over it: the write stage lists the node's pods first (as it
    does for labels and profiles), leaves the twin out and asks for a relist; the next
    tick writes the twin eco and draining."""
    for name in ("a", "b"):  # static 0.5: a performance, b eco
        emulator.put_object(seeding.make_node(name, labels=MANAGED))
    stack.configure(kick_window="1h", output_api="nodetwin")
    stack.start_worker()
    stack.start_proc("watch", ["watch"], ready="started")
    wait_for(lambda: _synced(state), timeout=30, what="a synced, fresh cache")
    assert ticks.run()["failures"] == {}

    emulator.put_object(annotated_pod("annotated", "a"))

    def counted(by_node: dict[str, int]) -> bool:
        view = clients.cache(state).read(tick_time=time.time(), now=time.time(), max_age=2.0)
        return not isinstance(view, str) and view.demand.performance_pods_by_node == by_node

    wait_for(lambda: counted({"a": 1}), timeout=30, what="the annotated pod in the cache")
    wait_for(lambda: _cache_holds_the_twins(emulator, state), timeout=30, what="twins cached")
    emulator.reset_counters()
    done = ticks.run()
    assert done["failures"] == {}
    assert done["written"] == 0
    twin_a = emulator.get_object("nodetwins", "a")
    assert twin_a is not None
    assert twin_a["spec"]["profile"] == "performance"

    # b is eco; a performance pod lands on it and the cache misses it (as a lost event
    # would); b's twin is deleted, so the next tick writes an eco twin spec alone (the
    # labels are eco already): the fresh pod list must stop it.
    emulator.put_object(annotated_pod("pinned", "b"))
    wait_for(lambda: counted({"a": 1, "b": 1}), timeout=30, what="the pinned pod cached")
    redis = state.client
    assert redis.hdel(cache_store.PODS, "default/pinned") == 1
    redis.hdel(cache_store.PERF, "b")
    redis.hincrby(cache_store.DEMAND, "performance", -1)
    assert emulator.delete_object("nodetwins", "b")
    wait_for(lambda: _cache_holds_the_twins(emulator, state), timeout=30, what="delete cached")
    stopped_before = _counter(state, metrics.DOWNGRADES_STOPPED)

    held = ticks.run()
    assert held["failures"] == {}
    assert emulator.get_object("nodetwins", "b") is None, "no eco twin over a performance pod"
    assert _counter(state, metrics.DOWNGRADES_STOPPED) == stopped_before + 1

    wait_for(lambda: redis.hget(cache_store.PODS, "default/pinned"), timeout=20, what="relist")
    assert ticks.run()["failures"] == {}
    twin_b = emulator.get_object("nodetwins", "b")
    assert twin_b is not None
    assert twin_b["spec"]["profile"] == "eco"
    assert twin_b["spec"]["scheduling"] == {"draining": True}


def annotated_pod(name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "annotations": {"joulie.io/workload-class": "performance"},
        },
        "spec": {"containers": [{"name": "c", "image": "x"}], "nodeName": node},
        "status": {"phase": "Running"},
    }


def _counter(state: store.RedisStore, name: str) -> float:
    counters, _ = state.metric_values()
    return counters.get(metrics.field(name), 0.0)


HARDWARE_PATH = "/apis/joulie.io/v1alpha1/nodehardwares"


def test_nodehardware_figures_reach_the_twin_status_of_a_dotted_node_name(
    cluster: ClusterBed, redis_server: RedisServer
) -> None:
    """The agent names its NodeHardware with the sanitised node name; the reference's
    twin looks it up by the raw name and never finds it (NODETWIN.md §10.1). We find it by
    spec.nodeName: its figures reach the status, its GPU range the GPU cap in watts."""
    node = "gpu-1.example.com"
    obj = seeding.make_node(node, labels=MANAGED)
    obj["status"] = {"allocatable": {"nvidia.com/gpu": "8"}, "capacity": {"cpu": "192"}}
    cluster.create(obj)
    # the agent: create (the server drops a status sent with it), then write the status
    status = {
        "cpu": {
            "rawModel": "AMD EPYC 9654 96-Core Processor",
            "sockets": 2,
            "totalCores": 192,
            "capRange": {"type": "package", "minWattsPerSocket": 320, "maxWattsPerSocket": 400},
        },
        "gpu": {
            "present": True,
            "rawModel": "NVIDIA-H100-NVL",
            "count": 8,
            "capRangePerGpu": {"minWatts": 200, "maxWatts": 400, "defaultWatts": 400},
        },
    }
    created = cluster.call(
        "POST",
        HARDWARE_PATH,
        body={
            "apiVersion": "joulie.io/v1alpha1",
            "kind": "NodeHardware",
            "metadata": {"name": "gpu-1-example-com"},
            "spec": {"nodeName": node},
            "status": status,
        },
    )
    assert "status" not in created or not created["status"], "status is dropped on create"
    cluster.call(
        "PATCH",
        f"{HARDWARE_PATH}/gpu-1-example-com/status",
        body={"status": status},
        content_type="application/merge-patch+json",
    )
    op = Operator(cluster, redis_server.url, "nodetwin", GPU_WRITE_ABSOLUTE_CAPS="true")
    try:
        op.tick()  # one node, static 0.5: performance
    finally:
        op.close()

    (found,) = cluster.list_objects("nodetwins")
    assert found["metadata"]["name"] == "gpu-1-example-com"
    assert found["spec"]["nodeName"] == node
    assert found["spec"]["cpu"] == {}  # a GPU node gets no CPU cap (docs/SPEC.md D62)
    assert found["spec"]["gpu"] == {
        "powerCap": {"scope": "perGpu", "capPctOfMax": 100, "capWattsPerGpu": 400}
    }
    power = found["status"]["powerMeasurement"]
    assert (power["cpuTdpW"], power["gpuTdpW"], power["nodeTdpW"]) == (800, 3200, 4000)
    assert power["nodeCappedPowerW"] == 4000
    assert found["status"]["hardwareDensityScore"] == 100
    assert found["status"]["schedulableClass"] == "performance"


def _cache_holds_hardware(state: store.RedisStore, nodes: set[str]) -> bool:
    view = clients.cache(state).read(
        tick_time=time.time(), now=time.time(), max_age=2.0, hardware=True
    )
    if isinstance(view, str) or not view.hardware_cached:
        return False
    return {h.node_name for h in view.snapshot.hardware} == nodes


def test_density_order_on_the_watch_road_follows_a_new_nodehardware(
    stack: Stack, emulator: Emulator, ticks: TickClient, state: store.RedisStore
) -> None:
    """NODE_ORDER=density with the default output: the watcher watches NodeHardwares and
    keeps the hardware labels, so a cache-fed tick lists nothing; a NodeHardware the
    agent writes reaches the cache and reorders the plan."""
    epyc = {**MANAGED, "joulie.io/hw.cpu-model": "AMD-EPYC-9654"}
    for name in ("a", "b"):  # one family, equal density: name order, static 0.5: a
        emulator.put_object(seeding.make_node(name, labels=epyc))
    stack.configure(kick_window="1h", node_order="density")
    stack.start_worker()
    stack.start_proc("watch", ["watch"], ready="started")
    wait_for(lambda: _synced(state), timeout=30, what="a synced, fresh cache")
    assert "nodehardwares" in clients.cache(state).status().synced

    assert ticks.run()["failures"] == {}
    assert emulator.get_node("a")["metadata"]["labels"]["joulie.io/power-profile"] == "performance"
    assert emulator.get_node("b")["metadata"]["labels"]["joulie.io/power-profile"] == "eco"

    # Given the agent of b reports 192 cores: b is now the densest node of the family
    emulator.put_object(
        {
            "apiVersion": "joulie.io/v1alpha1",
            "kind": "NodeHardware",
            "metadata": {"name": "b"},
            "spec": {"nodeName": "b"},
            "status": {"cpu": {"rawModel": "AMD EPYC 9654", "sockets": 2, "totalCores": 192}},
        }
    )
    wait_for(lambda: _cache_holds_hardware(state, {"b"}), timeout=30, what="hardware cached")
    emulator.reset_counters()
    # When a tick runs from the cache
    assert ticks.run()["failures"] == {}
    # Then b is performance, a eco, and only a's pods were listed (the downgrade's
    # confirmation): no node, profile or NodeHardware list
    assert emulator.get_node("b")["metadata"]["labels"]["joulie.io/power-profile"] == "performance"
    assert emulator.get_node("a")["metadata"]["labels"]["joulie.io/power-profile"] == "eco"
    lists = {k: n for k, n in _requests(emulator).items() if k[0] == "list"}
    assert lists == {("list", "pods"): 1}
