"""The pure core composed: snapshot → demand → plan → guarded plan → writes.

The reconcile stages call these one at a time (each stage stores its output in
Redis for the next); ``decide`` runs them all at once for the ``plan`` command.
No I/O here: the settings come in as an argument (only the fields of ``Params``, which
``config.Settings`` satisfies), the tick time too, and so do the FSM records and the
downgrade budget already spent that damping reads (docs/SPEC.md §12).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from joulie_tasks.core import (
    caps,
    classify,
    damping,
    guard,
    hardware,
    models,
    order,
    plan,
    schedule,
    selectors,
    snapshot_parse,
    twin,
    write,
)

logger = logging.getLogger(__name__)


class Params(Protocol):
    """What the stages read of the settings (docs/SPEC.md §3); ``config.Settings`` is one."""

    @property
    def reserved_label_key(self) -> str: ...
    @property
    def power_profile_label(self) -> str: ...
    @property
    def draining_label(self) -> str: ...
    @property
    def performance_cap_watts(self) -> float: ...
    @property
    def max_transitions_per_tick(self) -> int: ...
    @property
    def selector(self) -> selectors.LabelSelector: ...
    def policy_params(self) -> models.PolicyParams: ...
    def damping_params(self) -> models.DampingParams: ...
    @property
    def schedule(self) -> models.Schedule: ...
    @property
    def output_api(self) -> models.OutputApi: ...
    @property
    def node_order(self) -> models.NodeOrder: ...
    @property
    def product_label_keys(self) -> tuple[str, ...]: ...
    def twin_caps(self) -> caps.Caps: ...


class Decided(models.Frozen):
    """Everything one tick decides, in stage order."""

    demand: models.Demand
    plan: models.Plan
    guarded: models.GuardedPlan
    writes: models.WriteSet


def demand_of(snap: models.Snapshot) -> models.Demand:
    return classify.summarise_demand(snap.pods)


def plan_for(snap: models.Snapshot, demand: models.Demand, *, settings: Params) -> models.Plan:
    eligible = snapshot_parse.select_eligible(
        snap.nodes, selector=settings.selector, reserved_label_key=settings.reserved_label_key
    )
    ranking = None
    if settings.node_order is models.NodeOrder.DENSITY:
        ranking = order.rank(planner_hardware(snap, eligible, settings=settings))
    return plan.make_plan(
        [n.name for n in eligible],
        demand=demand,
        params=schedule.policy_at(
            settings.policy_params(),
            active=schedule.active_windows(settings.schedule, at=snap.tick_time),
        ),
        tick_time=snap.tick_time,
        order=ranking,
    )


def planner_hardware(
    snap: models.Snapshot, nodes: Sequence[models.NodeInfo], *, settings: Params
) -> dict[models.NodeName, hardware.Hardware]:
    """The planner's view of ``nodes``' hardware: NodeHardware, else labels."""
    return hardware.planner_view(
        nodes, records=snap.hardware, product_label_keys=settings.product_label_keys
    )


def guard_for(
    snap: models.Snapshot,
    demand: models.Demand,
    planned: models.Plan,
    *,
    settings: Params,
    history: Mapping[str, models.FsmRecord] | None = None,
    downgrades_used: int = 0,
) -> models.GuardedPlan:
    """Guard, damping, then MAX_TRANSITIONS_PER_TICK. ``history`` is the FSM (None: the
    FSM is unknown, so the dwell holds nothing) and ``downgrades_used`` the downgrades
    already in the budget window."""
    guarded = guard.apply_guard(
        planned,
        nodes=snap.nodes,
        demand=demand,
        profile_label=settings.power_profile_label,
        draining_label=settings.draining_label,
        tick_time=snap.tick_time,
        performance_cap_watts=settings.performance_cap_watts,
    )
    policy = settings.policy_params()
    active = schedule.active_windows(settings.schedule, at=snap.tick_time)
    damped = damping.damp_transitions(
        guarded,
        params=settings.damping_params(),
        context=models.DampingContext(
            tick_time=snap.tick_time,
            history=damping.history_of(history or {}),
            downgrades_used=downgrades_used,
            frozen_by=schedule.freezing_window(active),
            performance_cap_watts=policy.performance_cap_watts,
            eco_cap_watts=policy.eco_cap_watts,
        ),
    )
    return guard.limit_profile_changes(damped, max_changes=settings.max_transitions_per_tick)


#: A writer: its share of what is written for the decided nodes (core/write.py,
#: core/twin.py). A new object type written per node is one more writer here.
Writer = Callable[[models.Snapshot, models.GuardedPlan], models.WriteSet]


def writers_for(settings: Params) -> list[Writer]:
    """The labels (every mode), then the objects OUTPUT_API asks for: profile objects
    (``nodepowerprofile``, ``both``) and NodeTwins (``nodetwin``, ``both``)."""

    def labels(snap: models.Snapshot, guarded: models.GuardedPlan) -> models.WriteSet:
        return write.label_writes(
            guarded,
            nodes=snap.nodes,
            profile_label=settings.power_profile_label,
            draining_label=settings.draining_label,
        )

    def profiles(snap: models.Snapshot, guarded: models.GuardedPlan) -> models.WriteSet:
        return write.profile_writes(guarded, nodes=snap.nodes, profiles=snap.profiles)

    def twins(snap: models.Snapshot, guarded: models.GuardedPlan) -> models.WriteSet:
        decided = [d.node for d in guarded.decisions]
        writes, gone = twin.desired_twin_writes(
            guarded,
            nodes=snap.nodes,
            twins=snap.twins,
            caps=settings.twin_caps(),
            planner_hw=planner_hardware(snap, snap.nodes, settings=settings),
            twin_hw=hardware.twin_view(decided, records=snap.hardware),
        )
        return models.WriteSet(twins=writes, twin_deletes=gone)

    mode = settings.output_api
    return [
        labels,
        *([profiles] if mode.writes_profiles else []),
        *([twins] if mode.writes_twins else []),
    ]


def writes_for(
    snap: models.Snapshot, guarded: models.GuardedPlan, *, settings: Params
) -> models.WriteSet:
    """Every writer's share of the writes (:func:`writers_for`), merged."""
    writes = models.WriteSet()
    for writer in writers_for(settings):
        writes = writes.merged(writer(snap, guarded))
    return writes


def decide(
    snap: models.Snapshot,
    *,
    settings: Params,
    history: Mapping[str, models.FsmRecord] | None = None,
    downgrades_used: int = 0,
) -> Decided:
    """All stages of the core on one snapshot (what a tick would do with it)."""
    demand = demand_of(snap)
    planned = plan_for(snap, demand, settings=settings)
    guarded = guard_for(
        snap, demand, planned, settings=settings, history=history, downgrades_used=downgrades_used
    )
    return Decided(
        demand=demand,
        plan=planned,
        guarded=guarded,
        writes=writes_for(snap, guarded, settings=settings),
    )
