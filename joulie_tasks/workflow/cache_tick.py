"""How a tick uses the watch-fed cache: read it, confirm before eco, answer the kick.

- :func:`read` (snapshot stage): when the cache is synced and its heartbeat younger
  than CACHE_MAX_AGE, the tick's snapshot (nodes, profiles, and NodeTwins when
  OUTPUT_API writes them and the watcher watches them) and its demand come from the
  cache and no API request is made; otherwise the caller lists as before, and
  the fallback is logged and counted (``joulie_cache_fallbacks_total{reason}``).
  Either way the tick records the cache's change sequence it has seen.
- :func:`confirm` (write batches of a cache-fed tick): before a node is written
  towards eco — its labels to eco without draining, or its profile object to eco —
  or its NodeTwin spec to eco without draining — one ``list pods`` by
  ``spec.nodeName`` counts its active performance-only pods;
  a node that has any is not written this tick (``joulie_downgrades_stopped_total``)
  and the watcher is asked to relist. A wrong cache can delay a downgrade, never
  cause one under a performance pod.
- :func:`served` (end of tick): the change sequence the tick read is served; the
  reaction latency of the oldest change it answered goes to a histogram.
- :func:`start_quiet` / :func:`is_quiet` (every stage): a tick that finds the cache at
  the revision of the last converged tick, with the same settings, is run quiet: its
  stages pass it through and its end records only what every tick records
  (docs/SPEC.md §9.10; the decision is core/quiet.py's).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import NamedTuple

from joulie_tasks import config, errors, ports
from joulie_tasks.adapters import retrying
from joulie_tasks.core import cache as core_cache
from joulie_tasks.core import models, quiet
from joulie_tasks.ports import cluster, metrics
from joulie_tasks.workflow import lifecycle, watcher

logger = logging.getLogger(__name__)


class Cached(NamedTuple):
    """A tick's input read from the cache; ``twins_cached`` False means the snapshot
    has no NodeTwins and the caller lists them (OUTPUT_API writes them, the watcher
    does not watch them: it runs with another OUTPUT_API)."""

    snapshot: models.Snapshot
    demand: models.Demand
    twins_cached: bool
    #: Likewise for NodeHardwares (read when Settings.reads_hardware).
    hardware_cached: bool = False


def read(
    ref: lifecycle.TickRef,
    *,
    state: ports.state.StateStore,
    cache: ports.cache.TickCache | None,
    settings: config.Settings,
) -> Cached | None:
    """The tick's snapshot and demand from the cache, or None (the caller lists; also
    with no cache at all, as a store without one: the runner was given ``cache=None``)."""
    cs = cache
    if cs is None:
        return None
    detail = ""
    try:
        view = cs.read(
            tick_time=ref.tick_time,
            now=time.time(),
            max_age=settings.cache_max_age,
            twins=settings.output_api.writes_twins,
            hardware=settings.reads_hardware,
        )
    except (errors.StateStoreError, ValueError) as e:
        view, detail = core_cache.Unusable.UNREADABLE, f" ({e})"
    if isinstance(view, ports.cache.CacheView):
        state.save_cache_mark(ref.tick_id, models.CacheMark(fed=True, seq=view.seq, rev=view.rev))
        logger.info("tick %s: snapshot from the cache (age %.2fs)", ref.tick_id, view.age_s)
        return Cached(view.snapshot, view.demand, view.twins_cached, view.hardware_cached)
    state.add_counters(metrics.Values().add(metrics.CACHE_FALLBACKS, reason=view.value).as_dict())
    log = logger.info if view is core_cache.Unusable.ABSENT else logger.warning
    log("tick %s: cache not used (%s%s); listing", ref.tick_id, view.value, detail)
    try:
        seq = cs.status().seq
    except errors.StateStoreError:
        seq = 0
    state.save_cache_mark(ref.tick_id, models.CacheMark(fed=False, seq=seq))
    return None


def start_quiet(
    ref: lifecycle.TickRef,
    *,
    state: ports.state.StateStore,
    cache: ports.cache.TickCache | None,
    settings: config.Settings,
) -> bool:
    """Mark the tick quiet and return True when nothing it reads changed since the last
    converged tick: the cache is usable (synced, fresh, watching everything the tick
    reads) at that tick's revision, the settings are the same and its horizon has not
    passed. Otherwise (or when Redis cannot say) False: the tick runs in full."""
    if cache is None or ref.dry_run or ref.paused or not quiet_allowed(settings):
        return False
    try:
        record = state.converged()
        if record is None:
            return False
        status = cache.status()
    except errors.StateStoreError as e:
        logger.info("tick %s: not quiet: %s", ref.tick_id, e)
        return False
    age = status.age(time.time())
    usable = (
        set(watcher.watched(settings)) <= status.synced.keys()
        and all(status.synced.values())
        and age is not None
        and age <= settings.cache_max_age
    )
    if not usable or not quiet.holds(
        record, rev=status.rev, settings=settings.digest, tick_time=ref.tick_time
    ):
        return False
    state.save_cache_mark(
        ref.tick_id, models.CacheMark(fed=True, seq=status.seq, rev=status.rev, quiet=True)
    )
    logger.info(
        "tick %s: quiet: nothing changed since tick %s (cache revision %d)",
        ref.tick_id,
        record.tick_id,
        status.rev,
    )
    return True


def quiet_allowed(settings: config.Settings) -> bool:
    """Quiet ticks need plans that time alone cannot change between two known instants:
    not the time-driven debug policy (docs/SPEC.md §9.10). Schedule windows change the
    policy only at their edges, where the converged record ends; a dwell or a budget
    only withholds a planned change, and a converged tick had none planned and none held.
    """
    return settings.policy is not models.PolicyName.RULE_SWAP_V1


def is_quiet(ref: lifecycle.TickRef, *, state: ports.state.StateStore) -> bool:
    """True for a tick the snapshot stage marked quiet."""
    found = mark(ref, state=state)
    return found is not None and found.quiet


def mark(ref: lifecycle.TickRef, *, state: ports.state.StateStore) -> models.CacheMark | None:
    try:
        return state.load_cache_mark(ref.tick_id)
    except errors.StateStoreError:
        return None


def towards_eco(batch: models.WriteSet, *, profile_label: str, draining_label: str) -> set[str]:
    """Nodes this batch writes towards eco: labels to eco without draining, a profile
    object to eco (unless the same batch sets draining), or a NodeTwin spec to eco
    without ``scheduling.draining`` (the agent caps at once on that spec, and it can be
    written alone: a twin recreated, or NodeTwin output switched on)."""
    eco = models.Profile.ECO.value
    nodes: set[str] = {
        w.node
        for w in batch.labels
        if w.labels.get(profile_label) == eco and w.labels.get(draining_label) != "true"
    }
    draining = {w.node for w in batch.labels if w.labels.get(draining_label) == "true"}
    nodes |= {
        w.spec.node_name
        for w in batch.profiles
        if w.spec.profile is models.Profile.ECO and w.spec.node_name not in draining
    }
    nodes |= {w.node for w in batch.twins if w.spec is not None and _eco_twin_spec(w.spec)}
    return nodes


def _eco_twin_spec(spec: Mapping[str, object]) -> bool:
    scheduling = spec.get("scheduling")
    draining = isinstance(scheduling, Mapping) and scheduling.get("draining") is True
    return spec.get("profile") == models.Profile.ECO.value and not draining


def confirm(
    batch: models.WriteSet,
    *,
    ref: lifecycle.TickRef,
    gateway: cluster.KubeGateway,
    state: ports.state.StateStore,
    cache: ports.cache.TickCache | None,
    settings: config.Settings,
) -> tuple[models.WriteSet, dict[str, str]]:
    """The batch without the nodes a fresh pod list shows still running performance
    pods, and those nodes with the reason (skipped this tick)."""
    nodes = towards_eco(
        batch, profile_label=settings.power_profile_label, draining_label=settings.draining_label
    )
    if not nodes:
        return batch, {}
    stopped: dict[str, str] = {}
    for node in sorted(nodes):
        try:
            count = _performance_pods(node, gateway=gateway, settings=settings, ref=ref)
        except errors.KubeError as e:
            stopped[node] = f"downgrade not confirmed: pods on the node cannot be read ({e})"
            continue
        if count:
            stopped[node] = f"downgrade stopped: {count} performance pod(s) still on the node"
    increments = metrics.Values().add(metrics.CONFIRMATIONS, len(nodes))
    if stopped:
        increments.add(metrics.DOWNGRADES_STOPPED, len(stopped))
        for node, why in stopped.items():
            logger.warning("tick %s: node %s: %s", ref.tick_id, node, why)
        try:
            if cache is not None:
                cache.request_relist()
        except errors.StateStoreError as e:
            logger.warning("tick %s: cannot ask the watcher to relist: %s", ref.tick_id, e)
    state.add_counters(increments.as_dict())
    if not stopped:
        return batch, {}
    return batch.without(stopped), stopped


def _performance_pods(
    node: str, *, gateway: cluster.KubeGateway, settings: config.Settings, ref: lifecycle.TickRef
) -> int:
    def read() -> int:
        items, _ = gateway.list_all(
            cluster.PODS, page_size=settings.list_page_size, field_selector=f"spec.nodeName={node}"
        )
        return sum(
            1
            for obj in items
            if core_cache.pod_contribution(obj).startswith(core_cache.PERFORMANCE)
        )

    policy = retrying.transient_retry(label=f"tick {ref.tick_id}: confirm {node}")
    count: int = policy(read)
    return count


def served(
    ref: lifecycle.TickRef,
    *,
    state: ports.state.StateStore,
    cache: ports.cache.TickCache | None,
) -> None:
    """Record that the tick answered the changes it read (reaction latency)."""
    found = mark(ref, state=state)
    cs = cache
    if found is None or cs is None:
        return
    try:
        latency = cs.serve(found.seq, time.time())
    except errors.StateStoreError as e:
        logger.warning("tick %s: cannot record the served change: %s", ref.tick_id, e)
        return
    if latency is not None:
        state.add_counters(
            metrics.histogram_increments(
                metrics.REACTION_LATENCY,
                latency,
                metrics.EXTRA_HISTOGRAMS[metrics.REACTION_LATENCY],
            )
        )
        logger.info("tick %s: answered a change %.2fs after it happened", ref.tick_id, latency)
