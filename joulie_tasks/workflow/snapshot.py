"""Stage 1: read nodes, pods and NodePowerProfiles into a Snapshot (docs/SPEC.md §2 step 1).

Reads go through the KubeGateway port as raw JSON, page by page, and are reduced
at once to the compact models the core needs (snapshot_parse.py): pods without any
power-profile constraint are general whatever else they say, so they are counted
and dropped here instead of travelling further. If pods cannot be read the
snapshot says so (``pods=None``) and the guard fails safe; without nodes there is
no tick at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import tenacity

from joulie_tasks import errors
from joulie_tasks.adapters import gcpause, retrying
from joulie_tasks.core import hardware, models, snapshot_parse
from joulie_tasks.ports import cluster

logger = logging.getLogger(__name__)


def take_snapshot(
    *,
    gateway: cluster.KubeGateway,
    tick_time: float,
    tick_id: str,
    page_size: int,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: retrying.RetryHook | None = None,
    read_twins: bool = False,
    read_hardware: bool = False,
) -> models.Snapshot:
    """List the three collections (with pagination) and extract what the core needs;
    NodeTwins too when ``read_twins`` (OUTPUT_API writes them), NodeHardwares when
    ``read_hardware`` (Settings.reads_hardware).

    ``on_retry`` is called before each retried read (for the retry counters).
    """
    with gcpause.paused():  # tens of thousands of acyclic objects: see gcpause.py
        snap = _take(
            gateway=gateway,
            tick_time=tick_time,
            tick_id=tick_id,
            page_size=page_size,
            sleep=sleep,
            on_retry=on_retry,
        )
    if read_twins:
        snap = with_twins(
            snap, gateway=gateway, page_size=page_size, sleep=sleep, on_retry=on_retry
        )
    if read_hardware:
        snap = with_hardware(
            snap, gateway=gateway, page_size=page_size, sleep=sleep, on_retry=on_retry
        )
    return snap


def with_twins(
    snap: models.Snapshot,
    *,
    gateway: cluster.KubeGateway,
    page_size: int,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: retrying.RetryHook | None = None,
) -> models.Snapshot:
    """``snap`` with the cluster's NodeTwins, listed now. A cache-fed tick needs this
    only when the watcher does not watch them (it runs with another OUTPUT_API)."""

    def retry(label: str) -> tenacity.Retrying:
        return retrying.transient_retry(label=label, sleep=sleep, on_retry=on_retry)

    twins = _list(gateway, cluster.TWINS, page_size, snapshot_parse.twin_info_from_manifest, retry)
    return snap.model_copy(update={"twins": twins})


def with_hardware(
    snap: models.Snapshot,
    *,
    gateway: cluster.KubeGateway,
    page_size: int,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: retrying.RetryHook | None = None,
) -> models.Snapshot:
    """``snap`` with the cluster's NodeHardwares, listed now (a cache-fed tick whose
    watcher does not watch them too). Without the CRD (404) there are none: a cluster
    whose agents are of the older generation, where every node falls back on labels."""

    def retry(label: str) -> tenacity.Retrying:
        return retrying.transient_retry(label=label, sleep=sleep, on_retry=on_retry)

    try:
        found = _list(
            gateway, cluster.HARDWARE, page_size, hardware.hardware_info_from_manifest, retry
        )
    except errors.KubeFatal as e:
        if e.status != 404:
            raise
        logger.warning("NodeHardware is not served (%s): node labels only", e)
        found = ()
    return snap.model_copy(update={"hardware": found})


def _take(
    *,
    gateway: cluster.KubeGateway,
    tick_time: float,
    tick_id: str,
    page_size: int,
    sleep: Callable[[float], None],
    on_retry: retrying.RetryHook | None,
) -> models.Snapshot:
    def retry(label: str) -> tenacity.Retrying:
        return retrying.transient_retry(label=label, sleep=sleep, on_retry=on_retry)

    nodes = _list(gateway, cluster.NODES, page_size, snapshot_parse.node_info_from_manifest, retry)
    profiles = _list(
        gateway, cluster.PROFILES, page_size, snapshot_parse.npp_info_from_manifest, retry
    )
    pods: tuple[models.PodInfo, ...] | None
    try:
        pods = _read_pods(gateway, page_size=page_size, tick_id=tick_id, retry=retry)
    except errors.KubeError as e:
        logger.warning(
            "tick %s: pods cannot be read (%s); no downgrade will be written this tick",
            tick_id,
            e,
        )
        pods = None
    return models.Snapshot(tick_time=tick_time, nodes=nodes, pods=pods, profiles=profiles)


def _list(
    gateway: cluster.KubeGateway,
    resource: cluster.Resource,
    page_size: int,
    extract: Callable[[Mapping[str, object]], Any],
    retry: Callable[[str], tenacity.Retrying],
) -> tuple[Any, ...]:
    def read() -> tuple[Any, ...]:
        items = (extract(raw) for raw in gateway.list_items(resource, page_size=page_size))
        return tuple(item for item in items if item is not None)

    policy = retry(f"list {resource.plural}")
    return policy(read)


def _read_pods(
    gateway: cluster.KubeGateway,
    *,
    page_size: int,
    tick_id: str,
    retry: Callable[[str], tenacity.Retrying],
) -> tuple[models.PodInfo, ...]:
    def read() -> tuple[models.PodInfo, ...]:
        kept: list[models.PodInfo] = []
        malformed = 0
        for raw in _constrained(gateway.list_items(cluster.PODS, page_size=page_size)):
            pod, problems = snapshot_parse.pod_info_with_problems(raw)
            if problems:
                malformed += 1
                if malformed <= 5:  # one line per bad object, but never a flood
                    logger.warning(
                        "tick %s: malformed pod %s/%s handled conservatively: %s",
                        tick_id,
                        pod.namespace if pod else "?",
                        pod.name if pod else "?",
                        "; ".join(problems),
                    )
            if pod is not None and pod.has_power_signal():
                kept.append(pod)
        if malformed > 5:
            logger.warning("tick %s: %d malformed pods in all", tick_id, malformed)
        return tuple(kept)

    policy = retry("list pods")
    return policy(read)


def _constrained(items: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Only pods that mention the profile key somewhere, or carry the workload-class
    annotation, can be anything but general."""
    key = models.PROFILE_CONSTRAINT_KEY
    for raw in items:
        metadata = raw.get("metadata")
        annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
        if isinstance(annotations, dict) and models.WORKLOAD_CLASS_ANNOTATION in annotations:
            yield raw
            continue
        spec = raw.get("spec")
        if not isinstance(spec, dict):
            continue
        selector = spec.get("nodeSelector")
        if isinstance(selector, dict) and key in selector:
            yield raw
            continue
        affinity = spec.get("affinity")
        if isinstance(affinity, dict) and affinity.get("nodeAffinity"):
            yield raw
