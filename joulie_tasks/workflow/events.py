"""Kubernetes Events on Nodes for every applied and every newly deferred transition, and
for every hold that starts (damping, docs/SPEC.md §12).

``kubectl describe node`` then tells the story (reason, from, to, policy). Events
are informative only: they are sent after the tick's writes, from their own task,
with one attempt each; a failed event is logged and counted, never retried, and
never blocks or fails a tick. ``event_bodies`` is pure; ``send_events`` does I/O.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from joulie_tasks import errors
from joulie_tasks.core import models
from joulie_tasks.ports import cluster

logger = logging.getLogger(__name__)

NAMESPACE = "default"  # where Node events live, as kubelet's do
COMPONENT = "joulie-operator"
APPLIED_REASON = "PowerProfileChanged"
DEFERRED_REASON = "PowerProfileDowngradeDeferred"
HELD_REASON = "PowerProfileChangeHeld"


def event_bodies(
    decisions: Sequence[models.Decision],
    *,
    tick_time: float,
    failures: Mapping[str, str],
    tick_id: str,
    instance: str,
) -> list[dict[str, Any]]:
    """One Event per applied transition, per newly deferred downgrade that landed, and per
    hold that starts (a hold that goes on is not announced again, as a deferral)."""
    stamp = datetime.fromtimestamp(tick_time, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    bodies: list[dict[str, Any]] = []
    for d in decisions:
        if d.node in failures or d.postponed:
            continue
        applied = [t for t in d.transitions if t.result is models.TransitionResult.APPLIED]
        deferred = [t for t in d.transitions if t.result is models.TransitionResult.DEFERRED]
        # A deferral starting this tick is one event (not also its applied step into
        # DrainingPerformance); a deferral that goes on is not announced again.
        if d.hold is not None:
            if not d.hold_started:
                continue
            reason = HELD_REASON
            message = (
                f"{d.from_state.value} → {d.planned.value} held ({d.hold.value}): "
                f"{d.hold_detail} (policy {d.policy_name})"
            )
        elif deferred and d.from_state is not models.NodeState.DRAINING_PERFORMANCE:
            t = deferred[0]
            reason = DEFERRED_REASON
            message = (
                f"{t.from_state.value} → {t.to_state.value} deferred: "
                f"{d.performance_pods} performance pod(s) still running "
                f"(policy {d.policy_name})"
            )
        elif applied and not deferred:
            t = applied[0]
            reason = APPLIED_REASON
            message = f"{t.from_state.value} → {t.to_state.value} (policy {d.policy_name})"
        else:
            continue
        digest = hashlib.sha256(f"{tick_id}/{d.node}/{reason}".encode()).hexdigest()[:12]
        bodies.append(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"{d.node[:200]}.{digest}", "namespace": NAMESPACE},
                "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": d.node},
                "reason": reason,
                "message": message,
                "type": "Normal",
                "source": {"component": COMPONENT},
                "reportingComponent": "joulie.io/operator",
                "reportingInstance": instance[:128],
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            }
        )
    return bodies


def send_events(bodies: Sequence[Mapping[str, Any]], *, gateway: cluster.KubeGateway) -> int:
    """Create the events, one attempt each; return how many failed (logged)."""
    failed = 0
    for body in bodies:
        try:
            gateway.create_event(NAMESPACE, body)
        except errors.KubeError as e:
            failed += 1
            if failed <= 3:
                logger.warning(
                    "event for node %s not recorded: %s", body["involvedObject"]["name"], e
                )
    if failed > 3:
        logger.warning("%d events not recorded in all", failed)
    return failed
