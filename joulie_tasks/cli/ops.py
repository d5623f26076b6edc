"""Operator commands for the people running it: status, history, plan, pause, resume.

They read Redis (FSM, transition stream, last tick) and the cluster; ``plan``
computes what a tick would write without taking the lock or touching the FSM,
and with ``--server-dry-run`` sends those writes with ``dryRun=All`` so the API
server validates them without persisting anything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from joulie_tasks import config, ports
from joulie_tasks.adapters import clients, store
from joulie_tasks.core import damping, decide, durations, guard, schedule, snapshot_parse
from joulie_tasks.ports import cluster
from joulie_tasks.workflow import apply, reconcile, snapshot


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(float(seconds), tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def _progress(message: str) -> None:
    """Progress for long operations, on stderr and only for a person at a terminal."""
    if sys.stderr.isatty():
        print(message, file=sys.stderr, flush=True)


# --- status -------------------------------------------------------------------------------


def status_rows(
    settings: config.Settings, state: store.RedisStore, gateway: cluster.KubeGateway
) -> dict[str, Any]:
    """The managed nodes as Redis and the cluster see them, plus the operator's switches."""
    _progress("reading nodes …")
    nodes = [
        n
        for n in map(
            snapshot_parse.node_info_from_manifest,
            gateway.list_items(cluster.NODES, page_size=settings.list_page_size),
        )
        if n is not None
    ]
    eligible = snapshot_parse.select_eligible(
        nodes, selector=settings.selector, reserved_label_key=settings.reserved_label_key
    )
    fsm = state.fsm()
    last = state.tick_summary()
    pending: set[str] = set()
    if last is not None:
        try:
            pending = set(state.load_writes(last.tick_id).nodes())
        except Exception:  # the last tick's data may have expired
            pending = set()
    rows = []
    for node in eligible:
        record = fsm.get(node.name)
        rows.append(
            {
                "node": node.name,
                "state": record.state.value if record is not None else "-",
                "cluster_state": guard.read_node_state(
                    node.labels,
                    profile_label=settings.power_profile_label,
                    draining_label=settings.draining_label,
                ).value,
                "since": record.since if record is not None else None,
                "profile": node.labels.get(settings.power_profile_label),
                "draining": node.labels.get(settings.draining_label),
                "performance_pods": record.performance_pods if record is not None else None,
                "last_error": record.last_error if record is not None else None,
                "pending_write": node.name in pending,
                "held_by": record.held_by.value if record and record.held_by else None,
                "profile_since": record.profile_since if record is not None else None,
            }
        )
    return {
        "paused": state.is_paused(),
        "damping": damping_status(settings, state, eligible=len(eligible), now=time.time()),
        "last_tick": None if last is None else last.model_dump(mode="json"),
        "watcher": _watcher_status(state),
        "nodes": rows,
    }


def damping_status(
    settings: config.Settings, state: ports.state.StateStore, *, eligible: int, now: float
) -> dict[str, Any]:
    """Damping in force now (docs/SPEC.md §12): dwell, budget spent and left, the active
    schedule windows and the one freezing downgrades."""
    params = settings.damping_params()
    active = schedule.active_windows(settings.schedule, at=now)
    limit = damping.budget_limit(params, eligible=eligible)
    used = state.downgrades_since(now - params.budget_window_s) if limit is not None else None
    return {
        "min_profile_dwell_s": params.min_dwell_s,
        "dwell_upgrades": params.dwell_upgrades,
        "budget": None if limit is None else {"limit": limit, "used": used},
        "budget_window_s": params.budget_window_s,
        "active_windows": [w.name for w in active],
        "frozen_by": schedule.freezing_window(active),
    }


def _damping_line(data: Mapping[str, Any]) -> str:
    parts = []
    if data["min_profile_dwell_s"]:
        dwell = durations.format_duration(data["min_profile_dwell_s"])
        parts.append(f"dwell {dwell}{' (upgrades too)' if data['dwell_upgrades'] else ''}")
    if data["budget"] is not None:
        window = durations.format_duration(data["budget_window_s"])
        parts.append(f"budget {data['budget']['used']}/{data['budget']['limit']} per {window}")
    windows = ", ".join(data["active_windows"]) or "none"
    frozen = f"; downgrades frozen by {data['frozen_by']}" if data["frozen_by"] else ""
    return f"damping: {', '.join(parts) or 'off'}; active windows: {windows}{frozen}"


def _watcher_status(state: store.RedisStore) -> dict[str, Any]:
    """Who watches, how old the cache is, and the last relist (cache_store.py)."""
    status = clients.cache(state).status()
    return {
        "lease": status.lease,
        "synced": all(status.synced.values()),
        "cache_age_s": status.age(time.time()),
        "last_relist": status.last_relist,
        "last_relist_reason": status.last_relist_reason,
        "changes_seen": status.seq,
        "changes_served": status.served,
    }


def cmd_status(settings: config.Settings, args: argparse.Namespace) -> int:
    state = _connect(settings)
    data = status_rows(settings, state, clients.gateway(settings))
    if args.output == "json":
        print(json.dumps(data, indent=2))
        return 0
    last = data["last_tick"]
    print(f"paused: {'yes — ticks plan but write nothing' if data['paused'] else 'no'}")
    watch = data.get("watcher") or {}
    if watch.get("lease"):
        age = watch.get("cache_age_s")
        print(
            f"watcher: {watch['lease']} (cache {'synced' if watch['synced'] else 'not synced'}, "
            f"age {'-' if age is None else f'{age:.1f}s'}, last relist "
            f"{_when(watch['last_relist'])} {watch['last_relist_reason'] or ''})"
        )
    else:
        print("watcher: none (ticks list the cluster)")
    print(_damping_line(data["damping"]))
    if last:
        print(
            f"last tick: {last['tick_id']} at {_when(last['tick_time'])} "
            f"({last['written']} writes, {len(last['failures'])} failed, "
            f"{last['duration_s']:.2f}s{', quiet' if last.get('quiet') else ''})"
        )
    rows = [
        (
            r["node"],
            r["state"],
            _when(r["since"]),
            r["profile"] or "-",
            r["draining"] or "-",
            "-" if r["performance_pods"] is None else r["performance_pods"],
            "yes" if r["pending_write"] else "-",
            r["held_by"] or "-",
            r["last_error"] or "-",
        )
        for r in data["nodes"]
    ]
    headers = (
        "NODE",
        "STATE",
        "SINCE",
        "PROFILE",
        "DRAINING",
        "PERF-PODS",
        "PENDING",
        "HELD",
        "ERROR",
    )
    print(_table(headers, rows))
    return 0


# --- history ------------------------------------------------------------------------------


def parse_since(text: str, *, now: float) -> float:
    """``--since``: a Go duration back from now (``1h``) or a time point."""
    try:
        return now - durations.parse_duration(text)
    except ValueError:
        pass
    try:
        return durations.parse_time_point(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{e}, or a duration such as 1h") from None


def cmd_history(settings: config.Settings, args: argparse.Namespace) -> int:
    state = _connect(settings)
    since = parse_since(args.since, now=time.time()) if args.since else 0.0
    entries = [
        t
        for t in state.transitions(since_ms=int(since * 1000))
        if args.node is None or t.node == args.node
    ]
    if args.output == "json":
        print(json.dumps([{"id": t.id, **t.fields()} for t in entries], indent=2))
        return 0
    table = [
        (_when(t.time), t.node, t.from_state.value, t.to_state.value, t.result.value, t.reason)
        for t in entries
    ]
    print(_table(("TIME", "NODE", "FROM", "TO", "RESULT", "REASON"), table))
    return 0


# --- plan ---------------------------------------------------------------------------------


def cmd_plan(settings: config.Settings, args: argparse.Namespace) -> int:
    gateway = clients.gateway(settings)
    _progress("reading nodes, pods and profiles …")
    snap = snapshot.take_snapshot(
        gateway=gateway,
        tick_time=time.time(),
        tick_id="plan",
        page_size=settings.list_page_size,
        read_twins=settings.output_api.writes_twins,
        read_hardware=settings.reads_hardware,
    )
    history: dict[str, Any] | None = None
    used = 0
    if settings.damps:
        # Damping decides from the FSM and the budget ledger: read them as a tick would.
        history, used = reconcile.damping_inputs(
            _connect(settings), settings=settings, tick_time=snap.tick_time
        )
    decided = decide.decide(snap, settings=settings, history=history, downgrades_used=used)
    needs = decided.writes.nodes()
    rejected: dict[str, str] = {}
    if args.server_dry_run and not decided.writes.empty:
        _progress(f"sending {len(needs)} nodes' writes with dryRun=All …")
        result = apply.apply_writes(
            apply.group_by_node(decided.writes),
            gateway=gateway,
            concurrency=settings.write_concurrency,
            tick_id="plan",
            dry_run=True,
        )
        rejected = result.failures
    rows = [
        {
            "node": d.node,
            "from_state": d.from_state.value,
            "to_state": d.to_state.value,
            "profile": d.profile.value,
            "draining": d.draining,
            "cap_watts": d.cap_watts,
            "performance_pods": d.performance_pods,
            "postponed": d.postponed,
            "held_by": None if d.hold is None else d.hold.value,
            "hold_detail": d.hold_detail or None,
            "write_needed": d.node in needs,
            "server_dry_run": ("rejected: " + rejected[d.node]) if d.node in rejected else None,
        }
        for d in decided.guarded.decisions
    ]
    active = [w.name for w in schedule.active_windows(settings.schedule, at=snap.tick_time)]
    if args.output == "json":
        body = {"policy": decided.plan.policy_name, "active_windows": active, "nodes": rows}
        print(json.dumps(body, indent=2))
    else:
        print(f"policy {decided.plan.policy_name}: {len(needs)} of {len(rows)} nodes to write")
        if active:
            print(f"active windows: {', '.join(active)}")
        table = [
            (
                r["node"],
                r["from_state"],
                r["to_state"],
                r["profile"],
                str(r["draining"]).lower(),
                "yes" if r["write_needed"] else "-",
                "-" if r["held_by"] is None else f"{r['held_by']}: {r['hold_detail']}",
                r["server_dry_run"] or ("ok" if args.server_dry_run and r["write_needed"] else ""),
            )
            for r in rows
        ]
        headers = ("NODE", "FROM", "TO", "PROFILE", "DRAINING", "WRITE", "HELD", "DRY-RUN")
        print(_table(headers, table))
    return 1 if rejected else 0


# --- pause / resume -----------------------------------------------------------------------


def cmd_pause(settings: config.Settings, args: argparse.Namespace) -> int:
    _connect(settings).set_paused(True)
    print("paused: ticks still read and plan, but write nothing (joulie-tasks resume)")
    return 0


def cmd_resume(settings: config.Settings, args: argparse.Namespace) -> int:
    _connect(settings).set_paused(False)
    print("resumed: the next tick writes again")
    return 0


def _connect(settings: config.Settings) -> store.RedisStore:
    state = clients.redis_store(settings)
    state.ping()
    return state


def register(sub: Any, *, output: Mapping[str, Any]) -> None:
    """Add the operations subcommands to the CLI's subparsers."""
    status = sub.add_parser("status", help="managed nodes: state, since, profile, errors")
    status.add_argument("--output", **output)
    status.set_defaults(handler=cmd_status)

    history = sub.add_parser("history", help="transitions recorded in the Redis stream")
    history.add_argument("node", nargs="?", help="only this node")
    history.add_argument("--since", help="a duration back from now (1h), or a time")
    history.add_argument("--output", **output)
    history.set_defaults(handler=cmd_history)

    plan = sub.add_parser("plan", help="what a tick would write now (no lock, no writes)")
    plan.add_argument("--output", **output)
    plan.add_argument(
        "--server-dry-run",
        action="store_true",
        help="send the writes with dryRun=All so the API server validates them",
    )
    plan.set_defaults(handler=cmd_plan)

    pause = sub.add_parser("pause", help="stop writing: ticks still snapshot and plan")
    pause.set_defaults(handler=cmd_pause)
    resume = sub.add_parser("resume", help="write again")
    resume.set_defaults(handler=cmd_resume)
