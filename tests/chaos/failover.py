"""Failover measurements shared by the Sentinel chaos rows and bench/failover.py.

``fence_violations`` audits the API server's request log: joulie-tasks names the
tick of every request (``X-Joulie-Tick: <token> <tick id>``), so a write whose
token is lower than one the server had already seen came from a tick that no
longer held the newest fence when it wrote. ``next_completed`` sends ticks the
way beat would, through a broker that may be failing over, until one completes.
"""

from __future__ import annotations

import time

from joulie_testbed.emulator import Emulator
from joulie_testbed.procs import wait_for
from tests.chaos.harness import Driver

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
