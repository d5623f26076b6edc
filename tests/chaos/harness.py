"""Checks and tick driving shared by the chaos tests.

``problems()`` is the "state lost / false state" oracle of docs/RELIABILITY.md: it
compares Redis (FSM) and the cluster (emulator objects) with what the pure core
decides, and names every discrepancy. ``Driver`` sends manual ticks one at a time,
classifies each one's outcome from the operator's own records (finished-tick list
and ``joulie_ticks_total``), and counts the ticks until the cluster converged.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from joulie_tasks import config
from joulie_tasks.adapters import store
from joulie_tasks.core import models, snapshot_parse
from joulie_tasks.ports import metrics
from joulie_testbed.emulator import Emulator
from joulie_testbed.procs import wait_for
from tests.integration.conftest import TickClient, cluster_state
from tests.integration.test_workflow import pending_writes

LATE_COUNT_GRACE_S = 3.0
RESULTS = ("completed", "failed_writes", "failed", "skipped_locked", "fenced", "expired")


def eligible_names(emulator: Emulator, env: Mapping[str, str]) -> set[str]:
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


def managed_profiles(emulator: Emulator) -> list[dict[str, Any]]:
    return [
        p
        for p in emulator.list_objects("nodepowerprofiles")
        if ((p.get("metadata") or {}).get("labels") or {}).get(models.MANAGED_BY_LABEL)
        == models.MANAGED_BY_VALUE
    ]


def count_writes(ws: models.WriteSet) -> int:
    return len(ws.labels) + len(ws.profiles) + len(getattr(ws, "deletes", ()))


def problems(
    state: store.RedisStore, emulator: Emulator, env: Mapping[str, str], *, fsm: bool = True
) -> list[str]:
    """Every way Redis or the cluster differs from the converged truth; [] when none.

    ``fsm=False`` skips the "every managed node has an FSM record" check (for a
    moment when no tick has run since Redis lost its data).
    """
    found: list[str] = []
    pending = pending_writes(emulator, env)
    if not pending.empty or getattr(pending, "deletes", ()):
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
        self, ticks: TickClient, state: store.RedisStore, emulator: Emulator, env: dict[str, str]
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
