"""``python -m bench.failover``: Redis failover time under a running operator.

    .venv/bin/python -m bench.failover                 # 10 failovers, prints the table
    .venv/bin/python -m bench.failover -n 12 --write   # and records it in docs/RELIABILITY.md
    .venv/bin/python -m bench.failover --no-restart -n 10 --write   # the master stays dead

A Sentinel-managed Redis on loopback (a master, two replicas, three Sentinels;
down-after 1 s, failover-timeout 3 s: tests/integration/sentinel_cluster.py), the
API emulator (8 managed nodes) and one real worker process. Each round SIGKILLs the
current master and sends ticks the way beat would until one completes (every node's
profile label is flipped by hand before each kill, so that tick has writes to make).
By default the killed server is restarted at once as a replica of the new master
(what a pod restart does); with ``--no-restart`` it stays dead until that tick has
completed (the new master's remaining replica acknowledges the lock and the fences)
and is started again only to prepare the next round. Two times per round, both from
the kill: until the new master answers as master, and until the next tick completed.
The fence audit of the emulator's request log covers the whole run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import REPO
from joulie_tasks.adapters import store
from joulie_testbed.chaos import Driver, fence_violations, next_completed
from joulie_testbed.emulator import Emulator
from joulie_testbed.procs import Stack
from joulie_testbed.sentinel import FAILOVER_TIMEOUT_MS, SentinelCluster
from joulie_testbed.ticks import TickClient

#: The Sentinels' down-after for the measurement (the tests use a longer one, for calm
#: on a loaded CI machine; this figure is the quiet-machine failover time).
DOWN_AFTER_MS = 1000

TABLE = REPO / "docs" / "RELIABILITY.md"
HEADING = "## Redis failover time (Sentinel)"
HEADING_NO_RESTART = "## Redis failover time, master not restarted (Sentinel)"
COMMAND = ".venv/bin/python -m bench.failover"


Round = tuple[float, float, int, list[str]]


def run(rounds: int, workdir: Path, *, restart: bool = True) -> tuple[list[Round], int, list[str]]:
    """[(to new master, to next completed tick, epoch, tick outcomes)], writes audited,
    violations. ``restart=False``: the killed master stays dead until the tick completed."""
    cluster = SentinelCluster(workdir / "sentinel", down_after_ms=DOWN_AFTER_MS).start()
    emulator = Emulator().start()
    stack: Stack | None = None
    state = store.RedisStore(cluster.url, sentinel_master=cluster.master_name)
    ticks = TickClient(cluster.url, state)
    ticks.app.conf.broker_transport_options = {"master_name": cluster.master_name}
    try:
        kubeconfig = emulator.write_kubeconfig(workdir / "kubeconfig")
        stack = Stack(tmp=workdir, redis_server=cluster, kubeconfig=kubeconfig)  # type: ignore[arg-type]
        stack.configure(redis_sentinel_master=cluster.master_name, lock_ttl="4s")
        emulator.seed(8, 1, seed=90)
        stack.start_worker("w1")
        drive = Driver(ticks, state, emulator, stack.env)
        drive.converge(max_ticks=2)
        rows = []
        for n in range(rounds):
            cluster.wait_healthy()
            _flip_profiles(emulator)  # so the tick after the failover has writes to make
            old = cluster.master()
            fault_at = time.monotonic()
            old.kill()
            cluster.wait_failover(old.port)
            to_master = time.monotonic() - fault_at
            if restart:
                cluster.revive(old)
            sent = len(drive.outcomes)
            to_tick = next_completed(drive, fault_at)
            outcomes = drive.outcomes[sent:]
            if not restart:
                assert not old.running, "the killed master came back during the measurement"
                cluster.revive(old)  # for the next round, outside the measured time
            rows.append((to_master, to_tick, cluster.epoch(), outcomes))
            print(f"failover {n + 1}/{rounds}: new master {to_master:.2f} s, "
                  f"next completed tick {to_tick:.2f} s {outcomes}", file=sys.stderr)  # fmt: skip
        writes, violations = fence_violations(emulator)
        return rows, writes, violations
    finally:
        ticks.app.close()
        state.close()
        if stack is not None:
            stack.stop()
        emulator.stop()
        cluster.stop()


def _flip_profiles(emulator: Emulator) -> None:
    for node in emulator.list_objects("nodes"):
        profile = node["metadata"]["labels"].get("joulie.io/power-profile")
        if profile:
            flipped = "eco" if profile == "performance" else "performance"
            emulator.mutate_node_labels(
                node["metadata"]["name"], {"joulie.io/power-profile": flipped}
            )


def render(
    rows: list[Round], writes: int, violations: list[str], *, restart: bool = True, note: str = ""
) -> str:
    masters = [r[0] for r in rows]
    completed = [r[1] for r in rows]
    if restart:
        heading, flag = HEADING, ""
        how = "the killed master is restarted at once as a replica of the new one (a pod restart)"
    else:
        heading, flag = HEADING_NO_RESTART, " --no-restart"
        how = (
            "the killed master stays dead until the next tick has completed (the new "
            "master's remaining replica acknowledges the lock and the fences), and is "
            "started again only to prepare the next round"
        )
    lines = [
        heading,
        "",
        f"Measured by `{COMMAND}{flag} -n {len(rows)} --write` (bench/failover.py): "
        f"{len(rows)} failovers in a row under one worker; a master, two replicas and three "
        f"Sentinels, down-after {DOWN_AFTER_MS} ms, failover-timeout {FAILOVER_TIMEOUT_MS} "
        f"ms; {how}. Times are from the SIGKILL.{note}",
        "",
        "| | median | worst |",
        "|---|---|---|",
        f"| new master answers as master | {statistics.median(masters):.2f} s "
        f"| {max(masters):.2f} s |",
        f"| next completed tick | {statistics.median(completed):.2f} s | {max(completed):.2f} s |",
        "",
        "Per failover (s, to master / to tick; the ticks sent until one completed when "
        "more than one): "
        + ", ".join(
            f"{a:.1f}/{b:.1f}" + (f" ({', '.join(o)})" if len(o) > 1 else "") for a, b, _, o in rows
        )
        + f". Sentinel config epoch at the end: {rows[-1][2]}. Fence audit of the API "
        f"server's request log: {writes} writes, {len(violations)} from a stale token.",
        "",
    ]
    return "\n".join(lines)


def write_section(text: str) -> None:
    """Replace (or append) the section of docs/RELIABILITY.md that ``text`` heads, up to
    the next ``## `` heading; the others are kept."""
    heading = text.split("\n", 1)[0]
    current = TABLE.read_text() if TABLE.exists() else ""
    if heading not in current:
        head = current.rstrip("\n")
        TABLE.write_text((head + "\n\n" if head else "") + text)
        return
    before, _, rest = current.partition(heading)
    after = rest.partition("\n## ")
    tail = "## " + after[2] if after[1] else ""
    TABLE.write_text(before + text + ("\n" + tail if tail else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.failover", description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--rounds", type=int, default=10, help="failovers (default 10)")
    parser.add_argument("--write", action="store_true", help="record in docs/RELIABILITY.md")
    parser.add_argument("--keep", type=Path, help="keep the logs (worker, Redis) in this dir")
    parser.add_argument(
        "--no-restart", action="store_true", help="leave the killed master dead until a tick"
    )
    parser.add_argument("--note", default="", help="a sentence added to the recorded text")
    args = parser.parse_args(argv)
    restart = not args.no_restart
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        rows, writes, violations = run(args.rounds, args.keep, restart=restart)
    else:
        with tempfile.TemporaryDirectory(prefix="joulie-failover-") as tmp:
            rows, writes, violations = run(args.rounds, Path(tmp), restart=restart)
    note = f" {args.note}" if args.note else ""
    text = render(rows, writes, violations, restart=restart, note=note)
    print(text)
    if args.write:
        write_section(text)
    return 1 if violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
