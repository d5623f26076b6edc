"""The chaos harness: the converged-truth oracle, tick driving, failover measurements.

Shared by the chaos tests, the workflow tests and ``bench/failover.py``.

- ``pending_writes`` is the oracle for "converged": the pure core run on the cluster's
  current objects; the distributed workflow must reach exactly what it decides.
- ``problems()`` is the "state lost / false state" check of docs/RELIABILITY.md: it
  compares Redis (FSM) and the cluster with what the core decides, and names every
  discrepancy.
- ``Driver`` sends manual ticks one at a time, classifies each one's outcome from the
  operator's own records (finished-tick list and ``joulie_ticks_total``), and counts
  the ticks until the cluster converged.
- ``fence_violations`` audits the API server's request log: joulie-tasks names the tick
  of every request (``X-Joulie-Tick: <token> <tick id>``), so a write whose token is
  lower than one the server had already seen came from a tick that no longer held the
  newest fence when it wrote. ``next_completed`` sends ticks the way beat would,
  through a broker that may be failing over, until one completes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from joulie_tasks import config
from joulie_tasks.adapters import store
from joulie_tasks.core import classify, guard, models, plan, snapshot_parse, write
from joulie_tasks.ports import metrics
from joulie_testbed import ticks
from joulie_testbed.emulator import Emulator
from joulie_testbed.procs import wait_for


class Cluster(Protocol):
    """Where the cluster's objects are read: the emulator, or a real API server."""

    def list_objects(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]: ...
    def get_node(self, name: str) -> dict[str, Any]: ...


def pending_writes(cluster: Cluster, env: Mapping[str, str]) -> models.WriteSet:
    """What the pure core would still write for the cluster's current objects."""
    settings = config.read_settings(env)
    nodes = tuple(
        n for n in map(snapshot_parse.node_info_from_manifest, cluster.list_objects("nodes")) if n
    )
    pods = tuple(
        p for p in map(snapshot_parse.pod_info_from_manifest, cluster.list_objects("pods")) if p
    )
    profiles = tuple(
        p
        for p in map(
            snapshot_parse.npp_info_from_manifest, cluster.list_objects("nodepowerprofiles")
        )
        if p
    )
    eligible = snapshot_parse.select_eligible(
        nodes, selector=settings.selector, reserved_label_key=settings.reserved_label_key
    )
    demand = classify.summarise_demand(pods)
    planned = plan.make_plan(
        [n.name for n in eligible], demand=demand, params=settings.policy_params(), tick_time=0
    )
    guarded = guard.apply_guard(
        planned,
        nodes=nodes,
        demand=demand,
        profile_label=settings.power_profile_label,
        draining_label=settings.draining_label,
        tick_time=0,
        performance_cap_watts=settings.performance_cap_watts,
    )
    return write.desired_writes(
        guarded,
        nodes=nodes,
        profiles=profiles,
        profile_label=settings.power_profile_label,
        draining_label=settings.draining_label,
    )


def wait_for_node_events(cluster: Cluster, state: store.RedisStore, tick_id: str) -> int:
    """Wait until the Node events of the tick's deferred downgrades are in the cluster
    (they go out from their own task after the tick, one per newly deferred downgrade);
    returns how many there are."""
    deferred = [t for t in state.transitions() if t.tick_id == tick_id and t.result == "deferred"]
    wait_for(
        lambda: len(cluster.list_objects("events", "default")) == len(deferred),
        what=f"the node events of tick {tick_id}",
    )
    return len(deferred)


def wait_for_event_about(cluster: Cluster, node: str) -> None:
    """Wait until a Node event names ``node`` (a tick's events go out after it ends)."""
    wait_for(
        lambda: any(
            e["involvedObject"]["name"] == node for e in cluster.list_objects("events", "default")
        ),
        what=f"a node event about {node}",
    )


def cluster_state(cluster: Cluster, node: str) -> str:
    """The node's state as its labels show it (the truth the FSM must never contradict)."""
    labels = cluster.get_node(node)["metadata"].get("labels", {})
    return guard.read_node_state(
        labels, profile_label="joulie.io/power-profile", draining_label="joulie.io/draining"
    ).value


LATE_COUNT_GRACE_S = 3.0
RESULTS = ("completed", "failed_writes", "failed", "skipped_locked", "fenced", "expired")


def eligible_names(emulator: Cluster, env: Mapping[str, str]) -> set[str]:
    settings = config.read_settings(env)
    nodes = [
        n for n in map(snapshot_parse.node_info_from_manifest, emulator.list_objects("nodes")) if n
    ]
    return {
        n.name
        for n in snapshot_parse.select_eligible(
            nodes, selector=settings.selector, reserved_label_key=settings.reserved_label_key
        )
    }


def managed_profiles(emulator: Cluster) -> list[dict[str, Any]]:
    return [
        p
        for p in emulator.list_objects("nodepowerprofiles")
        if ((p.get("metadata") or {}).get("labels") or {}).get(models.MANAGED_BY_LABEL)
        == models.MANAGED_BY_VALUE
    ]


def count_writes(ws: models.WriteSet) -> int:
    return len(ws.labels) + len(ws.profiles) + len(ws.deletes)


def problems(
    state: store.RedisStore, emulator: Cluster, env: Mapping[str, str], *, fsm: bool = True
) -> list[str]:
    """Every way Redis or the cluster differs from the converged truth; [] when none.

    ``fsm=False`` skips the "every managed node has an FSM record" check (for a
    moment when no tick has run since Redis lost its data).
    """
    found: list[str] = []
    pending = pending_writes(emulator, env)
    if not pending.empty or pending.deletes:
        found.append(f"not converged: {count_writes(pending)} write(s) pending")
    records = state.fsm()
    nodes = {n["metadata"]["name"] for n in emulator.list_objects("nodes")}
    eligible = eligible_names(emulator, env)
    for node, record in sorted(records.items()):
        if node not in nodes:
            found.append(f"FSM keeps deleted node {node}")
        elif record.state != cluster_state(emulator, node):
            found.append(
                f"false state: {node} is {record.state} in Redis, "
                f"{cluster_state(emulator, node)} in the cluster"
            )
    if fsm and (missing := eligible - set(records)):
        found.append(f"FSM lost {len(missing)} managed node(s)")
    if unmanaged := set(records) & (nodes - eligible):
        found.append(f"FSM keeps {len(unmanaged)} unmanaged node(s)")
    owners: dict[str, list[str]] = {}
    for p in managed_profiles(emulator):
        owner = str((p.get("spec") or {}).get("nodeName"))
        owners.setdefault(owner, []).append(p["metadata"]["name"])
    for owner, names in sorted(owners.items()):
        if owner not in nodes:
            found.append(f"profile {names} left behind for deleted node {owner}")
        elif len(names) > 1:
            found.append(f"node {owner} has {len(names)} profiles {sorted(names)}")
    return found


def lost(found: list[str]) -> str:
    return "none" if not found else "; ".join(found)


class Driver:
    """Sends manual ticks one by one and reports what became of each."""

    def __init__(
        self,
        ticks: ticks.TickClient,
        state: store.RedisStore,
        emulator: Cluster,
        env: dict[str, str],
    ) -> None:
        self.ticks = ticks
        self.state = state
        self.emulator = emulator
        self.env = env
        self.outcomes: list[str] = []

    def counters(self) -> dict[str, float]:
        return {r: self.ticks.counter(metrics.TICKS, result=r) for r in RESULTS}

    def send(self) -> tuple[float, dict[str, float]]:
        before = self.counters()
        return self.ticks.send(), before

    def outcome(self, at: float, before: dict[str, float], *, timeout: float = 90) -> str:
        """Wait until the tick sent at ``at`` finished, failed or was skipped."""

        first_seen: dict[str, float] = {}

        def seen() -> str | None:
            done = self.ticks.finished(at)
            if done is not None:
                return "failed_writes" if done["failures"] else "completed"
            now = self.counters()
            for result in ("failed", "skipped_locked"):
                if now[result] > before[result]:
                    # A counter may also rise for an earlier tick (one lost to a Redis
                    # outage is counted late): give this tick a moment to finish.
                    since = first_seen.setdefault(result, time.monotonic())
                    if time.monotonic() - since > LATE_COUNT_GRACE_S:
                        return result
            return None

        result = wait_for(seen, timeout=timeout, interval=0.1, what=f"the tick sent at {at}")
        self.outcomes.append(result)
        return result

    def one(self, *, timeout: float = 90) -> str:
        at, before = self.send()
        return self.outcome(at, before, timeout=timeout)

    def converge(self, *, max_ticks: int, lock_wait: float = 30, fsm: bool = True) -> int:
        """Tick until nothing is pending and the FSM agrees; return the ticks used in all
        (including those already recorded in ``outcomes``)."""
        while len(self.outcomes) < max_ticks:
            result = self.one()
            if result in ("completed", "failed_writes") and not problems(
                self.state, self.emulator, self.env, fsm=fsm
            ):
                return len(self.outcomes)
            if result in ("skipped_locked", "failed"):
                # A dead holder's lock expires by itself (LOCK_TTL); beat would send the
                # next tick one interval later anyway.
                wait_for(
                    lambda: self.state.lock_holder() is None, timeout=lock_wait, what="lock free"
                )
        raise AssertionError(
            f"not converged after {max_ticks} ticks {self.outcomes}: "
            f"{problems(self.state, self.emulator, self.env, fsm=fsm)}"
        )

    def ticks_text(self) -> str:
        """``2 (fenced, completed)`` — the count and each tick's outcome."""
        return f"{len(self.outcomes)} ({', '.join(self.outcomes)})"

    def retries(self) -> tuple[int, str]:
        conflict = int(self.ticks.counter(metrics.KUBE_RETRIES, reason="conflict"))
        transient = int(self.ticks.counter(metrics.KUBE_RETRIES, reason="transient"))
        total = conflict + transient
        if not total:
            return 0, "0"
        parts = [f"{n} {k}" for k, n in (("409", conflict), ("transient", transient)) if n]
        return total, f"{total} ({', '.join(parts)})"


WRITES = ("PATCH", "PUT", "POST", "DELETE")


def fence_violations(emulator: Emulator) -> tuple[int, list[str]]:
    """(writes audited, violations) from the API server's request log."""
    highest, writes = 0, 0
    owner: dict[int, str] = {}
    bad: list[str] = []
    for r in emulator.request_log():
        if r.tick is None:
            continue
        text, tick_id = r.tick.split(" ", 1)
        token = int(text)
        if owner.setdefault(token, tick_id) != tick_id:
            bad.append(f"token {token} used by {owner[token]} and {tick_id}")
        if r.method in WRITES and ("/nodes/" in r.path or "nodepowerprofiles" in r.path):
            writes += 1
            if token < highest:
                bad.append(f"{r.method} {r.path} with token {token} after {highest} was seen")
        highest = max(highest, token)
    return writes, bad


def next_completed(drive: Driver, fault_at: float, *, timeout: float = 60) -> float:
    """Send ticks until one completes; seconds from the fault to its completion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            at, before = drive.send()
        except Exception:  # the broker is failing over: beat would just try next interval
            time.sleep(0.2)
            continue
        try:
            result = drive.outcome(at, before, timeout=10)
        except AssertionError:
            # Neither finished nor counted yet: a tick refused for want of a replica is
            # counted with its worker's next delivery of counters (store.count_later).
            drive.outcomes.append("unanswered")
            continue
        if result in ("completed", "failed_writes"):
            return time.monotonic() - fault_at
        wait_for(lambda: drive.state.lock_holder() is None, timeout=30, what="lock free")
    raise AssertionError(f"no tick completed within {timeout}s: {drive.outcomes}")
