"""The operator's vocabulary: pydantic models passed between the reconcile stages.

Every model is frozen and forbids unknown fields, so a payload that crosses the
broker is validated on the way in. Nothing here performs I/O or reads a clock;
raw Kubernetes objects never appear here (see snapshot.py for the extraction).
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum
from typing import NewType

from pydantic import BaseModel, ConfigDict, Field

NodeName = NewType("NodeName", str)
NppName = NewType("NppName", str)

#: The constant key that pod constraints are classified on (docs/SPEC.md §4). It is not
#: the configurable POWER_PROFILE_LABEL, on purpose: the reference does the same.
PROFILE_CONSTRAINT_KEY = "joulie.io/power-profile"
#: Pod annotation of the newest generation: exactly ``performance`` (trimmed) makes a
#: pod performance-only; no other value has any effect (docs/SPEC.md §13.5).
WORKLOAD_CLASS_ANNOTATION = "joulie.io/workload-class"
#: Label put on every NodePowerProfile the operator owns (docs/SPEC.md §7).
MANAGED_BY_LABEL = "joulie.io/managed-by"
MANAGED_BY_VALUE = "operator"


class Frozen(BaseModel):
    """Base of every model: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Profile(StrEnum):
    PERFORMANCE = "performance"
    ECO = "eco"


class NodeState(StrEnum):
    ACTIVE_PERFORMANCE = "ActivePerformance"
    DRAINING_PERFORMANCE = "DrainingPerformance"
    ACTIVE_ECO = "ActiveEco"
    UNKNOWN = "Unknown"


class TickResult(StrEnum):
    """How a tick ended (the ``result`` label of joulie_ticks_total, docs/SPEC.md §8)."""

    COMPLETED = "completed"
    FAILED_WRITES = "failed_writes"
    FAILED = "failed"
    EXPIRED = "expired"
    FENCED = "fenced"
    DUPLICATE = "duplicate"
    SKIPPED_LOCKED = "skipped_locked"


class RetryReason(StrEnum):
    """Why an API operation was retried (the ``reason`` label of joulie_kube_retries_total)."""

    CONFLICT = "conflict"  # 409: read again, recompute, apply again
    TRANSIENT = "transient"  # 429, 5xx, timeouts, connection errors


class DemandClass(StrEnum):
    PERFORMANCE_ONLY = "performance-only"
    ECO_ONLY = "eco-only"
    GENERAL = "general"


class OutputApi(StrEnum):
    """Which objects carry the decision (OUTPUT_API, docs/SPEC.md §3.2 and §13)."""

    NODEPOWERPROFILE = "nodepowerprofile"  # the reference's older generation (default)
    NODETWIN = "nodetwin"  # the newest generation's NodeTwin objects
    BOTH = "both"  # both at once, for clusters that migrate their agents

    @property
    def writes_profiles(self) -> bool:
        return self is not OutputApi.NODETWIN

    @property
    def writes_twins(self) -> bool:
        return self is not OutputApi.NODEPOWERPROFILE


class NodeOrder(StrEnum):
    """The order the policy assigns profiles in (NODE_ORDER, docs/SPEC.md §13.10)."""

    NAME = "name"  # byte order of the node names: the seed's behaviour (default)
    DENSITY = "density"  # compute density, densest first, with the per-family floor


class PolicyName(StrEnum):
    STATIC_PARTITION = "static_partition"
    QUEUE_AWARE_V1 = "queue_aware_v1"
    RULE_SWAP_V1 = "rule_swap_v1"


class TransitionResult(StrEnum):
    APPLIED = "applied"
    DEFERRED = "deferred"
    #: A profile change withheld by damping (dwell, budget, freeze; docs/SPEC.md §12).
    HELD = "held"


class HoldReason(StrEnum):
    """Why damping kept a node's profile this tick (docs/SPEC.md §12)."""

    DWELL = "dwell"
    BUDGET = "budget"
    FREEZE = "freeze"


# --- snapshot ---------------------------------------------------------------------------


class NodeInfo(Frozen):
    """What the operator needs of a Node: its name, labels and schedulability."""

    name: NodeName
    labels: dict[str, str] = Field(default_factory=dict)
    unschedulable: bool = False
    resource_version: str | None = None
    #: Allocatable GPUs (``status.allocatable``, NODETWIN.md §6.2): only the NodeTwin
    #: writer reads it, for the GPU cap intent.
    gpus: int = 0
    #: ``status.capacity.cpu`` rounded up to whole cores (0 when absent): the core
    #: count of the label fallback when a node has no NodeHardware (NODETWIN.md §2.4 A).
    cpu_cores: int = 0


class Requirement(Frozen):
    """One required node-affinity match expression on the profile key.

    ``operator`` is kept verbatim (unknown operators classify as general);
    ``values`` holds only the string values (non-strings are dropped at extraction).
    """

    operator: str
    values: tuple[str, ...] = ()


class PodInfo(Frozen):
    """The scheduling facts of one pod that classification and the guard need.

    ``node_selector_profile`` is the pod's nodeSelector value for the profile key,
    untrimmed, when it is a string. ``requirements`` are the required-affinity
    expressions on the profile key, from every OR-ed term, flattened: docs/SPEC.md §4
    counts "one such entry in any term", so the grouping does not matter.
    """

    namespace: str = ""
    name: str = ""
    node_name: NodeName | None = None
    phase: str | None = None
    deleting: bool = False
    node_selector_profile: str | None = None
    requirements: tuple[Requirement, ...] = ()
    #: The ``joulie.io/workload-class`` annotation, untrimmed, when it is a string.
    workload_class: str | None = None

    def has_power_signal(self) -> bool:
        """Whether anything could make the pod other than general: a nodeSelector or an
        affinity expression on the profile key, or the workload-class annotation."""
        return (
            self.node_selector_profile is not None
            or bool(self.requirements)
            or self.workload_class is not None
        )


class NppInfo(Frozen):
    """An existing NodePowerProfile, as read from the API (docs/SPEC.md §7)."""

    name: NppName
    resource_version: str | None = None
    node_name: str | None = None
    profile: str | None = None
    cap_watts: float | None = None
    policy_name: str | None = None
    managed_by: str | None = None


class TwinInfo(Frozen):
    """An existing NodeTwin, as read from the API (docs/SPEC.md §13).

    ``spec`` and ``status`` are the object's JSON maps, kept whole so the writer can
    compare them with what it wants (``status`` without the agent's ``controlStatus``).
    """

    name: str
    resource_version: str | None = None
    node_name: str | None = None
    managed_by: str | None = None
    spec: dict[str, object] = Field(default_factory=dict)
    status: dict[str, object] = Field(default_factory=dict)


class HardwareInfo(Frozen):
    """A NodeHardware object's figures as the agent wrote them (NODETWIN.md §2.2), or
    the same figures taken from a node's labels when it has none (§2.4 A).

    Counts are 0 and wattages 0.0 when absent; whole and fractional numbers are read
    alike (the API server returns ``400`` for ``400.0``, NODETWIN.md §10.4).
    """

    node_name: str
    #: The object's name (the agent's sanitised node name); "" for a label record.
    name: str = ""
    cpu_model: str = ""
    cpu_raw_model: str = ""
    sockets: int = 0
    total_cores: int = 0
    #: ``cpu.capRange``: the RAPL range per package the agent read on the host.
    cpu_min_w_per_socket: float = 0.0
    cpu_max_w_per_socket: float = 0.0
    gpu_present: bool = False
    gpu_model: str = ""
    gpu_raw_model: str = ""
    gpu_count: int = 0
    #: ``gpu.capRangePerGpu``: the power-limit range of each GPU.
    gpu_min_w: float = 0.0
    gpu_max_w: float = 0.0


class Snapshot(Frozen):
    """Everything one tick reads, stamped with the tick's time.

    ``pods`` is ``None`` when the pod list could not be read: the guard then
    fails safe (no downgrade is written, docs/SPEC.md §6).
    """

    tick_time: float
    nodes: tuple[NodeInfo, ...] = ()
    pods: tuple[PodInfo, ...] | None = ()
    profiles: tuple[NppInfo, ...] = ()
    #: Read only when OUTPUT_API writes NodeTwins; empty (and unread) otherwise.
    twins: tuple[TwinInfo, ...] = ()
    #: NodeHardware objects; read only when OUTPUT_API writes NodeTwins or
    #: NODE_ORDER is ``density`` (docs/SPEC.md §13.10), empty otherwise.
    hardware: tuple[HardwareInfo, ...] = ()


# --- classify ---------------------------------------------------------------------------


class Demand(Frozen):
    """Active performance-sensitive demand: cluster-wide and per bound node.

    ``known`` is false when pods could not be read; counts are then zero and
    must not be trusted for a downgrade.
    """

    known: bool = True
    performance_pods: int = 0
    eco_pods: int = 0
    general_pods: int = 0
    performance_pods_by_node: dict[NodeName, int] = Field(default_factory=dict)


# --- plan -------------------------------------------------------------------------------


class PolicyParams(Frozen):
    """The policy part of the configuration (docs/SPEC.md §3), as the pure core sees it."""

    policy: PolicyName = PolicyName.STATIC_PARTITION
    interval_seconds: float = 60.0
    static_hp_frac: float = 0.5
    queue_hp_base_frac: float = 0.6
    queue_hp_min: int = 1
    queue_hp_max: int = 1_000_000
    queue_perf_per_hp_node: int = 10
    performance_cap_watts: float = 5000.0
    eco_cap_watts: float = 120.0


class Assignment(Frozen):
    """One node's planned profile before the guard."""

    node: NodeName
    profile: Profile
    cap_watts: float


class Plan(Frozen):
    """The policy's output: the eligible nodes with their profiles, in byte order of
    their names (NODE_ORDER=name) or densest first (NODE_ORDER=density)."""

    policy_name: str
    hp_count: int
    assignments: tuple[Assignment, ...] = ()


# --- guard ------------------------------------------------------------------------------


class Transition(Frozen):
    node: NodeName
    from_state: NodeState
    to_state: NodeState
    result: TransitionResult


class Decision(Frozen):
    """One node's guarded desired state and how it relates to its current state.

    ``held`` marks a downgrade withheld because the node's performance-pod count
    is unknown (fail safe): the node keeps a non-eco profile. ``postponed`` marks a
    profile change held back by MAX_TRANSITIONS_PER_TICK: nothing is written for
    the node this tick, and it keeps its current state.
    """

    node: NodeName
    planned: Profile
    profile: Profile
    draining: bool
    cap_watts: float
    policy_name: str
    performance_pods: int | None
    from_state: NodeState
    to_state: NodeState
    held: bool = False
    postponed: bool = False
    transitions: tuple[Transition, ...] = ()
    #: Damping (docs/SPEC.md §12): why the planned profile change was withheld, whether
    #: this tick starts the hold (announced once), and the explanation shown to people.
    hold: HoldReason | None = None
    hold_started: bool = False
    hold_detail: str = ""


class GuardedPlan(Frozen):
    tick_time: float
    policy_name: str
    decisions: tuple[Decision, ...] = ()


# --- damping and schedules (docs/SPEC.md §12) -------------------------------------------


class DampingParams(Frozen):
    """MIN_PROFILE_DWELL, DOWNGRADE_BUDGET and its window, as the pure core sees them.

    The budget is ``budget_count`` downgrades, or ``budget_percent`` % of the eligible
    nodes (rounded up), per ``budget_window_s``; both None means no budget.
    """

    min_dwell_s: float = Field(0.0, ge=0)
    dwell_upgrades: bool = False
    budget_count: int | None = Field(None, ge=0)
    budget_percent: float | None = Field(None, ge=0, le=100)
    budget_window_s: float = Field(600.0, gt=0)

    @property
    def has_budget(self) -> bool:
        return self.budget_count is not None or self.budget_percent is not None


class DampingContext(Frozen):
    """What damping reads besides the plan: FSM records, budget spent, schedule freeze."""

    tick_time: float
    history: dict[NodeName, FsmRecord] = Field(default_factory=dict)
    downgrades_used: int = 0
    frozen_by: str | None = None
    performance_cap_watts: float = 5000.0
    eco_cap_watts: float = 120.0


class PolicyOverrides(Frozen):
    """Policy parameters a schedule window replaces while it is active (unset: kept)."""

    static_hp_frac: float | None = Field(None, ge=0, le=1)
    queue_hp_base_frac: float | None = Field(None, ge=0, le=1)
    queue_hp_min: int | None = None
    queue_hp_max: int | None = None
    queue_perf_per_hp_node: int | None = None


class ScheduleWindow(Frozen):
    """A window that opens at each ``cron`` time (in ``timezone``) and lasts ``duration_s``."""

    name: str
    cron: str
    duration_s: float = Field(gt=0)
    timezone: str = "UTC"
    policy: PolicyOverrides = PolicyOverrides()
    freeze_downgrades: bool = False


class Schedule(Frozen):
    """SCHEDULE_FILE, validated; later windows override earlier ones field by field."""

    windows: tuple[ScheduleWindow, ...] = ()


# --- write ------------------------------------------------------------------------------


class NppSpec(Frozen):
    """The desired spec of one NodePowerProfile."""

    node_name: NodeName
    profile: Profile
    cap_watts: float
    policy_name: str


class LabelWrite(Frozen):
    """Set these labels on a node (merge patch); other labels are untouched."""

    node: NodeName
    labels: dict[str, str]


class NppWrite(Frozen):
    """Create (``resource_version`` is None) or replace one NodePowerProfile."""

    name: NppName
    spec: NppSpec
    create: bool
    resource_version: str | None = None


class TwinWrite(Frozen):
    """One NodeTwin's writes: its ``spec`` (create, or replace at ``resource_version``)
    and/or its ``status`` (a merge patch of the status subresource); None = unchanged."""

    name: str
    node: NodeName
    create: bool
    resource_version: str | None = None
    spec: dict[str, object] | None = None
    status: dict[str, object] | None = None


class WriteSet(Frozen):
    """The minimal writes that take the cluster from the snapshot to the plan.

    ``deletes`` names operator-owned profile objects whose node no longer exists;
    ``twins`` and ``twin_deletes`` are the NodeTwin writer's share (OUTPUT_API).
    """

    labels: tuple[LabelWrite, ...] = ()
    profiles: tuple[NppWrite, ...] = ()
    deletes: tuple[NppName, ...] = ()
    twins: tuple[TwinWrite, ...] = ()
    twin_deletes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return (
            not self.labels
            and not self.profiles
            and not self.deletes
            and not self.twins
            and not self.twin_deletes
        )

    def nodes(self) -> set[NodeName]:
        """The nodes touched by any write."""
        return (
            {w.node for w in self.labels}
            | {w.spec.node_name for w in self.profiles}
            | {w.node for w in self.twins}
        )

    def merged(self, other: WriteSet) -> WriteSet:
        """This set and ``other`` together: how each writer adds its share."""
        return WriteSet(
            **{name: getattr(self, name) + getattr(other, name) for name in WriteSet.model_fields}
        )

    def without(self, nodes: Collection[str]) -> WriteSet:
        """This set without the writes of ``nodes`` (the deletes are kept)."""
        return self.model_copy(
            update={
                "labels": tuple(w for w in self.labels if w.node not in nodes),
                "profiles": tuple(w for w in self.profiles if w.spec.node_name not in nodes),
                "twins": tuple(w for w in self.twins if w.node not in nodes),
            }
        )

    def batches(self, size: int) -> tuple[WriteSet, ...]:
        """The node writes in batches of at most ``size`` nodes, in node byte order (a
        stable split); the deletes go with the first batch, so there is always one."""
        labels = {w.node: w for w in self.labels}
        profiles = {w.spec.node_name: w for w in self.profiles}
        twins = {w.node: w for w in self.twins}
        nodes = sorted(self.nodes(), key=lambda n: n.encode())
        chunks = [nodes[i : i + size] for i in range(0, len(nodes), size)] or [[]]
        return tuple(
            WriteSet(
                labels=tuple(labels[n] for n in chunk if n in labels),
                profiles=tuple(profiles[n] for n in chunk if n in profiles),
                deletes=self.deletes if index == 0 else (),
                twins=tuple(twins[n] for n in chunk if n in twins),
                twin_deletes=self.twin_deletes if index == 0 else (),
            )
            for index, chunk in enumerate(chunks)
        )


class CacheMark(Frozen):
    """Which source fed a tick (the watch cache or a listing), the change sequence and
    the content revision it saw, and whether it is a quiet tick (docs/SPEC.md §9.10)."""

    fed: bool
    seq: int
    #: The cache's content revision (bumped by every cached change and every relist).
    rev: int = 0
    #: Nothing changed since the last converged tick: the stages pass it through.
    quiet: bool = False
    #: The earliest tick time at which the same inputs may decide differently (a
    #: NodeTwin status falling due); set by the write stage, None when never.
    due: float | None = None


class Converged(Frozen):
    """What a tick that left nothing to do hands the next ticks (docs/SPEC.md §9.10):
    while the cache's revision and the settings are the same and ``until`` has not
    passed, a tick decides the same and is run quiet, from this record alone."""

    #: The cache revision the converged tick read.
    rev: int
    #: The settings it ran with (``config.Settings.digest``).
    settings: str
    tick_id: str
    tick_time: float
    #: A quiet tick is allowed before this tick time; then a full tick runs again.
    until: float
    policy: str
    nodes: int
    #: Draining nodes: each quiet tick counts their deferred downgrade, as a full tick
    #: would (D18).
    draining: tuple[str, ...] = ()


class _Record(BaseModel):
    """Base of what is read back from Redis: immutable, tolerant of fields a newer
    operator added (the JSON written stays what it was)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class FsmRecord(_Record):
    """One node's FSM record (docs/ARCHITECTURE.md, the ``joulie:fsm`` hash)."""

    state: NodeState
    profile: Profile | None = None
    draining: bool = False
    since: float | None = None
    tick_id: str = ""
    token: int = 0
    performance_pods: int | None = None
    written: bool = False
    last_error: str | None = None
    #: When the node last changed profile (performance <-> eco); ``since`` is the time
    #: of the last *state* change. Records from before damping lack it (use ``since``).
    profile_since: float | None = None
    #: The damping hold in force at this record's tick, if any (docs/SPEC.md §12).
    held_by: HoldReason | None = None


class TransitionEntry(_Record):
    """One entry of the transition stream; ``id`` is the stream id (set on read)."""

    id: str = ""
    node: str
    from_state: NodeState = Field(alias="from")
    to_state: NodeState = Field(alias="to")
    result: TransitionResult
    reason: str
    policy: str
    tick_id: str
    time: float

    def fields(self) -> dict[str, str]:
        """The stream fields, as written since the first release (time as ``repr``)."""
        return {
            "node": self.node,
            "from": self.from_state.value,
            "to": self.to_state.value,
            "result": self.result.value,
            "reason": self.reason,
            "policy": self.policy,
            "tick_id": self.tick_id,
            "time": repr(self.time),
        }


class TickSummary(_Record):
    """The last-tick record: a finished tick without its decisions."""

    tick_id: str
    tick_time: float
    policy: str
    nodes: int
    writes_planned: int
    written: int
    retries: int
    failures: dict[str, str]
    applied: int
    deferred: int
    duration_s: float
    dry_run: bool
    paused: bool
    #: Seconds from the write batches being handed out to the last one finishing (0: none).
    write_phase_s: float = 0.0
    #: Run quiet: nothing had changed since the last converged tick (docs/SPEC.md §9.10).
    quiet: bool = False
