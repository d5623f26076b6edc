"""Stage 6, the effectful half: apply a WriteSet to the cluster (docs/SPEC.md §7, §9).

write.py computes the minimal writes (pure); this module performs them, one node
at a time, through the KubeGateway port. Each API call is retried on transient
failures; each node's writes are wrapped in a 409 closure that re-reads the
object, recomputes what is still needed and re-applies (never a blind re-send).
A failure on one node is reported for that node and never stops the others.
"""

from __future__ import annotations

import enum
import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import tenacity

from joulie_tasks import errors
from joulie_tasks.adapters import retrying
from joulie_tasks.core import models, twin, write
from joulie_tasks.ports import cluster

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class NodeWrites:
    """Everything one node needs written in one tick."""

    node: models.NodeName
    label: models.LabelWrite | None = None
    profile: models.NppWrite | None = None
    twin: models.TwinWrite | None = None

    def count(self) -> int:
        twin_calls = 0 if self.twin is None else twin_request_count(self.twin)
        return int(self.label is not None) + int(self.profile is not None) + twin_calls


def twin_request_count(w: models.TwinWrite) -> int:
    """API writes of one twin: its spec and its status are separate requests."""
    return int(w.spec is not None) + int(w.status is not None)


@dataclass
class ApplyResult:
    """Outcome of applying writes: API writes performed, retries, failed nodes, nodes
    skipped because they were deleted since the snapshot, and whether the writes were
    cut short because the tick lost its fence."""

    written: int = 0
    retries: Counter[models.RetryReason] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    fenced_off: bool = False


class _NodeGone(errors.KubeFatal):
    """Raised when a node was deleted between the snapshot and its write."""


class _Fenced(errors.JoulieError):
    """Raised before an API call once the tick has lost its fence."""


class Outcome(enum.Enum):
    """How one node's writes ended."""

    WRITTEN = "written"  # everything needed was written (possibly nothing)
    FENCED = "fenced"  # not attempted: the tick lost its lock
    GONE = "gone"  # the node was deleted since the snapshot: skipped, not failed
    FAILED = "failed"  # an API error after the retries


@dataclass(frozen=True)
class NodeOutcome:
    """One node's result: its kind, the API writes made, and why (GONE, FAILED)."""

    node: models.NodeName
    kind: Outcome
    written: int = 0
    reason: str = ""


def group_by_node(writes: models.WriteSet) -> list[NodeWrites]:
    """One NodeWrites per touched node, in node byte order (stable batching)."""
    labels = {w.node: w for w in writes.labels}
    profiles = {w.spec.node_name: w for w in writes.profiles}
    twins = {w.node: w for w in writes.twins}
    nodes = sorted(set(labels) | set(profiles) | set(twins), key=lambda n: n.encode())
    return [
        NodeWrites(node=n, label=labels.get(n), profile=profiles.get(n), twin=twins.get(n))
        for n in nodes
    ]


def apply_writes(
    node_writes: Sequence[NodeWrites],
    *,
    gateway: cluster.KubeGateway,
    concurrency: int,
    tick_id: str,
    dry_run: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    fence_holds: Callable[[], bool] | None = None,
) -> ApplyResult:
    """Apply every node's writes (``concurrency`` at a time); never raises per node.

    ``fence_holds`` is asked before each node: once it answers False (the tick lost
    its lock to a newer one) no further node is written and ``fenced_off`` is set, so a
    stalled tick that wakes up cannot overwrite the new holder's writes. A node
    deleted since the snapshot (404) is skipped and logged, not failed.
    """
    result = ApplyResult()
    lost = threading.Event()

    def holds() -> bool:
        if not lost.is_set() and fence_holds is not None and not fence_holds():
            lost.set()
        return not lost.is_set()

    writer = _NodeWriter(
        gateway=gateway, tick_id=tick_id, dry_run=dry_run, sleep=sleep, fence_holds=holds
    )

    def one(nw: NodeWrites) -> NodeOutcome:
        try:
            return NodeOutcome(nw.node, Outcome.WRITTEN, written=writer.apply(nw))
        except _Fenced:
            return NodeOutcome(nw.node, Outcome.FENCED)
        except _NodeGone as e:
            return NodeOutcome(nw.node, Outcome.GONE, reason=f"deleted: {e}")
        except errors.KubeError as e:
            return NodeOutcome(nw.node, Outcome.FAILED, reason=str(e))

    outcomes: Iterable[NodeOutcome]
    if concurrency <= 1 or len(node_writes) <= 1:
        outcomes = [one(nw) for nw in node_writes]
    else:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="write") as pool:
            outcomes = list(pool.map(one, node_writes))
    _collect(result, outcomes, tick_id=tick_id)
    result.retries.update(writer.retries)
    return result


def _collect(result: ApplyResult, outcomes: Iterable[NodeOutcome], *, tick_id: str) -> None:
    for out in outcomes:
        result.written += out.written
        if out.kind is Outcome.FENCED:
            result.fenced_off = True
        elif out.kind is Outcome.GONE:
            result.skipped[out.node] = out.reason
            logger.warning("tick %s: node %s: skipped, %s", tick_id, out.node, out.reason)
        elif out.kind is Outcome.FAILED:
            result.failures[out.node] = out.reason
            logger.error("tick %s: node %s: write failed: %s", tick_id, out.node, out.reason)
    if result.fenced_off:
        logger.warning("tick %s: writes stopped: the tick lost its lock", tick_id)


@dataclass(frozen=True)
class ObjectKind:
    """An object the operator writes one of per node and deletes when the node goes
    (NodePowerProfile, NodeTwin): how it is read, created or replaced, and deleted.
    Each gateway call is written out per kind, so the RBAC scan
    (tests/deploy/rbac_scan.py) sees which resource each verb touches."""

    noun: str
    read: Callable[[cluster.KubeGateway, str], dict[str, Any] | None]
    upsert: Callable[[cluster.KubeGateway, Mapping[str, Any], bool, bool], None]
    delete: Callable[[cluster.KubeGateway, str], None]
    #: Why a delete is made, for the log line.
    orphaned: str


PROFILES = ObjectKind(
    noun="profile",
    read=lambda gw, name: gw.get(cluster.PROFILES, name),
    upsert=lambda gw, body, exists, dry: gw.upsert_profile(body, exists=exists, dry_run=dry),
    delete=lambda gw, name: gw.delete_profile(name),
    orphaned="its node no longer exists",
)
TWINS = ObjectKind(
    noun="twin",
    read=lambda gw, name: gw.get(cluster.TWINS, name),
    upsert=lambda gw, body, exists, dry: gw.upsert_twin(body, exists=exists, dry_run=dry),
    delete=lambda gw, name: gw.delete_twin(name),
    orphaned="its node no longer exists or is no longer managed",
)


def delete_objects(
    names: Sequence[str],
    *,
    kind: ObjectKind,
    gateway: cluster.KubeGateway,
    tick_id: str,
    sleep: Callable[[float], None] = time.sleep,
) -> ApplyResult:
    """Delete the objects of deleted (or unmanaged) nodes; already gone is fine."""
    return _delete(
        names,
        what=kind.noun,
        why=kind.orphaned,
        delete=lambda name: kind.delete(gateway, name),
        tick_id=tick_id,
        sleep=sleep,
    )


def _delete(
    names: Sequence[str],
    *,
    what: str,
    why: str,
    delete: Callable[[str], None],
    tick_id: str,
    sleep: Callable[[float], None],
) -> ApplyResult:
    result = ApplyResult()
    for name in names:
        policy = retrying.transient_retry(
            label=f"tick {tick_id}: delete {what} {name}", sleep=sleep
        )
        try:
            policy(lambda name=name: delete(name))
            result.written += 1
            logger.info("tick %s: %s %s deleted: %s", tick_id, what, name, why)
        except errors.KubeFatal as e:
            if e.status != 404:
                result.failures[name] = str(e)
                logger.error("tick %s: %s %s: delete failed: %s", tick_id, what, name, e)
        except errors.KubeError as e:
            result.failures[name] = str(e)
            logger.error("tick %s: %s %s: delete failed: %s", tick_id, what, name, e)
    return result


class _NodeWriter:
    """The per-node read-recompute-apply closures, with their retry policies."""

    def __init__(
        self,
        *,
        gateway: cluster.KubeGateway,
        tick_id: str,
        dry_run: bool,
        sleep: Callable[[float], None],
        fence_holds: Callable[[], bool] = lambda: True,
    ) -> None:
        self._fence_holds = fence_holds
        self._kube = gateway
        self._tick_id = tick_id
        self._dry_run = dry_run
        self._sleep = sleep
        self._lock = threading.Lock()
        #: Retries by reason: ``conflict`` (409) or ``transient`` (5xx, 429, network).
        self.retries: Counter[models.RetryReason] = Counter()

    def _count_retry(self, node: str) -> Callable[[BaseException, int], None]:
        def hook(exc: BaseException, _attempt: int) -> None:
            reason = (
                models.RetryReason.CONFLICT
                if isinstance(exc, errors.KubeConflict)
                else models.RetryReason.TRANSIENT
            )
            with self._lock:
                self.retries[reason] += 1

        return hook

    def _call(self, node: str, label: str, fn: Callable[[], T]) -> T:
        # Fencing is checked before every API call, not once per batch: a tick that
        # stalled past its lock's TTL and wakes up must not send one more stale write.
        if not self._fence_holds():
            raise _Fenced(f"{label}: not sent, the tick lost its lock")
        return _retried(
            lambda: retrying.transient_retry(
                label=f"tick {self._tick_id}: {label}",
                on_retry=self._count_retry(node),
                sleep=self._sleep,
            ),
            errors.KubeTransient,
            fn,
        )

    def _on_conflict_rerun(self, node: str, what: str, closure: Callable[[], int]) -> int:
        """Run a read-recompute-apply closure, rerunning it on 409 (conflict_retry)."""
        return _retried(
            lambda: retrying.conflict_retry(
                label=f"tick {self._tick_id}: {what}",
                on_retry=self._count_retry(node),
                sleep=self._sleep,
            ),
            errors.KubeConflict,
            closure,
        )

    def apply(self, nw: NodeWrites) -> int:
        """Apply one node's writes; return how many API writes were made."""
        written = 0
        if nw.label is not None:
            written += self._apply_label(nw.label)
        if nw.profile is not None:
            written += self._apply_profile(nw.profile)
        if nw.twin is not None:
            written += self._apply_twin(nw.twin)
        return written

    def _apply_twin(self, desired: models.TwinWrite) -> int:
        """The twin's spec (create or replace, as every object kind), then its status
        (one merge patch of the subresource)."""
        node, name = desired.node, desired.name
        known = _Known(create=desired.create, resource_version=desired.resource_version)
        written = 0

        def manifest(at: _Known) -> Mapping[str, Any]:
            update = {"create": at.create, "resource_version": at.resource_version}
            return twin.twin_manifest(desired.model_copy(update=update))

        def holds(current: Mapping[str, Any]) -> bool:
            labels = (current.get("metadata") or {}).get("labels") or {}
            owned = labels.get(models.MANAGED_BY_LABEL) == models.MANAGED_BY_VALUE
            return owned and current.get("spec") == desired.spec

        if desired.spec is not None:
            written += self._create_or_replace(
                TWINS, node=node, name=name, known=known, manifest=manifest, holds=holds
            )
        status = desired.status
        # A dry-run create leaves no object whose status could be patched, even dry.
        if status is not None and not (self._dry_run and known.create):
            self._call(
                node,
                f"patch status of twin {name}",
                lambda: self._kube.patch_twin_status(name, status, dry_run=self._dry_run),
            )
            written += 1
        return written

    def _apply_label(self, desired: models.LabelWrite) -> int:
        node = desired.node
        attempt = 0

        def closure() -> int:
            nonlocal attempt
            attempt += 1
            if attempt > 1:  # after a 409: re-read, write only what is still missing
                current = self._call(
                    node, f"get node {node}", lambda: self._kube.get(cluster.NODES, node)
                )
                if current is None:
                    raise _NodeGone(f"node {node} no longer exists", status=404)
                if _labels_hold(current, desired.labels):
                    return 0
            try:
                self._call(
                    node,
                    f"patch labels of node {node}",
                    lambda: self._kube.patch_node_labels(
                        node, desired.labels, dry_run=self._dry_run
                    ),
                )
            except errors.KubeFatal as e:
                if e.status == 404:
                    raise _NodeGone(f"node {node} no longer exists", status=404) from e
                raise
            return 1

        return self._on_conflict_rerun(node, f"labels of node {node}", closure)

    def _apply_profile(self, desired: models.NppWrite) -> int:
        name = desired.name
        body = write.npp_manifest(name, desired.spec)
        known = _Known(create=desired.create, resource_version=desired.resource_version)

        def manifest(at: _Known) -> Mapping[str, Any]:
            version = None if at.create else at.resource_version
            return write.npp_manifest(name, desired.spec, resource_version=version)

        return self._create_or_replace(
            PROFILES,
            node=desired.spec.node_name,
            name=name,
            known=known,
            manifest=manifest,
            holds=lambda current: _profile_holds(current, body),
        )

    def _create_or_replace(
        self,
        kind: ObjectKind,
        *,
        node: str,
        name: str,
        known: _Known,
        manifest: Callable[[_Known], Mapping[str, Any]],
        holds: Callable[[Mapping[str, Any]], bool],
    ) -> int:
        """Create the object (``known.create``) or replace it at ``known``'s
        resourceVersion; a 409 re-reads it (the conflict policy reruns this), and an
        object that already ``holds`` what we want is not written again."""

        def closure() -> int:
            # Two passes at most: the second only when the object vanished (404) under a
            # replace, which docs/SPEC.md §9.8 answers with a re-read and a create.
            for _ in range(2):
                if known.stale and self._reread(
                    kind, node=node, name=name, known=known, holds=holds
                ):
                    return 0  # someone else already wrote what we wanted
                known.stale = True  # any later attempt (after a 409) reads first
                exists = not known.create
                upsert = functools.partial(
                    kind.upsert, self._kube, manifest(known), exists, self._dry_run
                )
                try:
                    self._call(
                        node, f"{'replace' if exists else 'create'} {kind.noun} {name}", upsert
                    )
                    return 1
                except errors.KubeFatal as e:
                    if not exists or e.status != 404:
                        raise
                    vanished = e
            raise vanished

        return self._on_conflict_rerun(node, f"{kind.noun} {name} of node {node}", closure)

    def _reread(
        self,
        kind: ObjectKind,
        *,
        node: str,
        name: str,
        known: _Known,
        holds: Callable[[Mapping[str, Any]], bool],
    ) -> bool:
        """Read the object again into ``known``; True when it already holds our write."""
        current = self._call(node, f"get {kind.noun} {name}", lambda: kind.read(self._kube, name))
        if current is None:
            known.create, known.resource_version = True, None
            return False
        known.create = False
        version = (current.get("metadata") or {}).get("resourceVersion")
        known.resource_version = str(version) if version else None
        return holds(current)


@dataclass
class _Known:
    """What the writer knows of an object: create it, or replace it at this
    resourceVersion; ``stale`` once an attempt was made (the next one reads first)."""

    create: bool
    resource_version: str | None
    stale: bool = False


def _retried(
    policy: Callable[[], tenacity.Retrying], retryable: type[BaseException], fn: Callable[[], T]
) -> T:
    """``policy()(fn)``, but the policy is only built when the first attempt fails.

    Nearly every call succeeds at once, and building a tenacity policy costs about as
    much CPU as the HTTP call it wraps (profiled by bench/). A first failure that is
    retryable is replayed as the policy's first attempt, so logs, hooks, waits and
    attempt counts are exactly those of ``policy()(fn)``.
    """
    try:
        return fn()
    except retryable as e:
        replay: list[BaseException] = [e]

    def attempt() -> T:
        if replay:
            raise replay.pop()
        return fn()

    return policy()(attempt)  # outside the handler: no implicit exception chaining


def _labels_hold(node_obj: Mapping[str, object], labels: Mapping[str, str]) -> bool:
    metadata = node_obj.get("metadata")
    current = metadata.get("labels") if isinstance(metadata, dict) else None
    current = current if isinstance(current, dict) else {}
    return all(current.get(k) == v for k, v in labels.items())


def _profile_holds(current: Mapping[str, object], body: Mapping[str, object]) -> bool:
    metadata = current.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, dict) else None
    wanted_labels = body["metadata"]["labels"]  # type: ignore[index]
    labels_ok = isinstance(labels, dict) and all(
        labels.get(k) == v for k, v in wanted_labels.items()
    )
    return labels_ok and current.get("spec") == body.get("spec")
