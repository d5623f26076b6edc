"""``python -m bench.watch``: the watch-fed cache against list mode and the reference.

    .venv/bin/python -m bench.watch                 # N = 5,000 (~51k pods), 10,000 for RSS
    .venv/bin/python -m bench.watch --quick         # N = 1,000 / 2,000, few bursts
    .venv/bin/python -m bench.watch --out docs/BENCHMARKS.md   # replace the watch section

Everything runs on this machine as separate processes: redis-server, the API emulator
(its own process), one Celery worker (prefork, concurrency 1), the watcher
(``joulie-tasks watch``), and this client. Measured, in the same run:

1. steady tick (nothing changes): list mode (no watcher), cache mode, and the
   reference pattern (bench/reference.py): API requests (emulator counters) and the
   in-tick duration (the tick summary's ``duration_s``);
2. reaction latency with background churn: bursts of performance pods created while
   a thread creates and deletes non-performance pods (≥ 20 pod events/s); from the
   burst's first create to the last node it needs labelled ``performance`` (polled
   on the emulator every 20 ms). Policy queue_aware_v1 (base 0, 4 performance pods
   per node) so that demand decides the plan;
3. API bytes per hour at N with the same churn: list mode = one tick's list
   responses x ticks per hour (RECONCILE_INTERVAL 1m); cache mode = watch-stream
   bytes per second x 3600 (the pod watch; the node and profile watches carry
   bookmarks only) + one full list per WATCH_RELIST_INTERVAL (10m);
4. the watcher's peak RSS after syncing 10,000 nodes / 100,000 pods, and the Redis
   memory of the cache keys;
5. the watcher's events/s ceiling: bench/churn_emulator.py changes pods at rising
   rates; the lag (events the cache is behind the store) is sampled twice a second.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import REPO, reference, write_marked
from bench.scenarios import REALISTIC_MIX, Bench
from joulie_tasks.adapters import cache_store, clients, store
from joulie_testbed.procs import Proc, RedisServer, peak_rss_mb, wait_for

BEGIN = "<!-- watch-bench:begin -->"
END = "<!-- watch-bench:end -->"
POLICY = {
    "policy_type": "queue_aware_v1",
    "queue_hp_base_frac": "0",
    "queue_hp_min": "0",
    "queue_perf_per_hp_node": "4",
}
PROFILE = "joulie.io/power-profile"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Watcher:
    def __init__(self, bench: Bench, env: dict[str, str], name: str = "watch") -> None:
        args = [sys.executable, "-m", "joulie_tasks", "--log-level", "WARNING", "watch"]
        self.proc = Proc(name, args, env=env, log=bench.workdir / "logs" / f"{name}.log")
        self.proc.wait_for_log("started", timeout=60)
        self.state = store.RedisStore(env["REDIS_URL"])
        self.cache = clients.cache(self.state)

    def wait_synced(self, timeout: float = 600) -> float:
        started = time.monotonic()

        def synced() -> bool:
            s = self.cache.status()
            age = s.age(time.time())
            return all(s.synced.values()) and age is not None and age < 2

        wait_for(synced, timeout=timeout, interval=0.2, what="a synced cache")
        return time.monotonic() - started

    def stop(self) -> None:
        self.state.close()
        self.proc.stop()


class Churn:
    """Creates and deletes non-performance pods at ``rate`` events per second."""

    def __init__(self, bench: Bench, nodes: list[str], *, rate: float) -> None:
        self.bench, self.nodes, self.rate = bench, nodes, rate
        self.events = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rng = random.Random(5)
        live: list[str] = []
        shapes = ("none", "selector-eco", "in-eco", "selector-unknown")
        start = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - start) * self.rate)
            while self.events < due and not self._stop.is_set():
                if len(live) > 50 or (live and rng.random() < 0.5):
                    self.bench.remote.delete_object("pods", live.pop(0), "churn")
                else:
                    name = f"churn-{self.events}"
                    pod = _pod(name, "churn", rng.choice(shapes), rng.choice(self.nodes))
                    self.bench.remote.put_object(pod)
                    live.append(name)
                self.events += 1
            self._stop.wait(0.01)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.events


def _pod(name: str, ns: str, shape: str, node: str | None) -> dict[str, Any]:
    from joulie_testbed.emulator import seed as seeding

    return seeding.make_pod(
        name, namespace=ns, shape=shape, node=node, phase="Running" if node else "Pending"
    )


def _eligible(bench: Bench) -> list[str]:
    nodes = bench.remote.list_objects("nodes")
    names = []
    for n in nodes:
        labels = n["metadata"].get("labels") or {}
        if labels.get("joulie.io/managed") != "true" or labels.get("joulie.io/reserved") == "true":
            continue
        if (n.get("spec") or {}).get("unschedulable"):
            continue
        names.append(n["metadata"]["name"])
    return sorted(names)


def _profile(bench: Bench, node: str) -> str | None:
    obj = bench.remote.get_object("nodes", node)
    return ((obj or {}).get("metadata", {}).get("labels") or {}).get(PROFILE)


def _list_bytes(url: str, token: str | None = None) -> int:
    """Bytes of one list-mode snapshot: the three collections, paged by 500."""
    total = 0
    for path in (
        "/api/v1/nodes",
        "/api/v1/pods",
        "/apis/joulie.io/v1alpha1/nodepowerprofiles",
    ):
        cont = ""
        while True:
            q = "?limit=500" + (f"&continue={cont}" if cont else "")
            with urllib.request.urlopen(url + path + q, timeout=120) as resp:
                body = resp.read()
            total += len(body)
            cont = (json.loads(body).get("metadata") or {}).get("continue") or ""
            if not cont:
                break
    return total


def _watch_bytes_per_s(url: str, seconds: float) -> float:
    """Bytes a pod watch (with bookmarks) receives per second, measured on a live stream."""
    with urllib.request.urlopen(url + "/api/v1/pods?limit=1", timeout=60) as resp:
        rv = json.loads(resp.read())["metadata"]["resourceVersion"]
    q = f"?watch=true&allowWatchBookmarks=true&resourceVersion={rv}&timeoutSeconds={int(seconds)}"
    got = 0
    started = time.monotonic()
    with urllib.request.urlopen(url + "/api/v1/pods" + q, timeout=seconds + 30) as resp:
        while chunk := resp.read1(65536):
            got += len(chunk)
    return got / (time.monotonic() - started)


def steady_and_reaction(
    bench: Bench, n: int, *, bursts: int, churn_rate: float, out: dict[str, Any]
) -> None:
    counts = bench.seed(n, REALISTIC_MIX, seed=n + 7)
    out["cluster"] = {"nodes": n, **counts}
    log(f"N={n}: seeded {counts}")
    cfg_ref = reference.RefConfig(
        policy="queue_aware_v1", queue_hp_base_frac=0, queue_hp_min=0, queue_perf_per_hp_node=4
    )
    with bench.workers(1, **POLICY):
        first = bench.converge(max_ticks=4)
        log(f"N={n}: converged (last tick {first.wall_s:.2f}s)")
        lists = [bench.our_tick() for _ in range(3)]
        out["list_mode"] = {
            "wall_s": [s.wall_s for s in lists],
            "requests": sum(lists[-1].requests.values()),
            "request_kinds": dict(lists[-1].requests),
        }
        log(f"N={n}: list mode {statistics.median([s.wall_s for s in lists]):.2f}s")
        env = dict(bench.base_env, **{k.upper(): v for k, v in POLICY.items()})
        watcher = Watcher(bench, env)
        try:
            out["sync_s"] = watcher.wait_synced()
            log(f"N={n}: cache synced in {out['sync_s']:.1f}s")
            stages_before = bench.ticks.stage_seconds()
            cached = [bench.our_tick() for _ in range(5)]
            stages_after = bench.ticks.stage_seconds()
            out["cache_mode_stage_s"] = {
                k: (stages_after[k] - stages_before.get(k, 0.0)) / len(cached) for k in stages_after
            }
            out["cache_mode"] = {
                "wall_s": [s.wall_s for s in cached],
                "requests": [sum(s.requests.values()) for s in cached],
                "request_kinds": dict(cached[-1].requests),
            }
            log(f"N={n}: cache mode {statistics.median([s.wall_s for s in cached]):.3f}s")
            ref = bench.ref_tick(cfg_ref)
            out["reference"] = {"wall_s": ref.wall_s, "requests": ref.total}
            log(f"N={n}: reference {ref.wall_s:.2f}s")
            reaction(bench, watcher, bursts=bursts, churn_rate=churn_rate, out=out)
        finally:
            watcher.stop()


def reaction(
    bench: Bench, watcher: Watcher, *, bursts: int, churn_rate: float, out: dict[str, Any]
) -> None:
    eligible = _eligible(bench)
    churn = Churn(bench, eligible, rate=churn_rate)
    started = time.monotonic()
    latencies: list[float] = []
    base_hp = sum(1 for name in eligible if _profile(bench, name) == "performance")
    size = 20  # 20 pods / 4 per node = exactly 5 more performance nodes
    target = eligible[min(base_hp + size // 4 - 1, len(eligible) - 1)]
    try:
        for b in range(bursts):
            if _profile(bench, target) != "eco":
                raise RuntimeError(f"{target} is not eco before burst {b}")
            t0 = time.monotonic()
            for i in range(size):
                pod = _pod(f"burst-{b}-{i}", "burst", "selector-performance", None)
                bench.remote.put_object(pod)
            wait_for(
                lambda: _profile(bench, target) == "performance",
                timeout=120,
                interval=0.02,
                what=f"{target} performance",
            )
            latencies.append(time.monotonic() - t0)
            log(f"burst {b}: {latencies[-1]:.2f}s")
            for i in range(size):
                bench.remote.delete_object("pods", f"burst-{b}-{i}", "burst")
            wait_for(
                lambda: _profile(bench, target) == "eco",
                timeout=120,
                interval=0.05,
                what=f"{target} eco",
            )
    finally:
        events = churn.stop()
    elapsed = time.monotonic() - started
    out["reaction"] = {
        "latencies_s": latencies,
        "churn_events": events,
        "churn_rate": events / elapsed,
        "bursts": bursts,
    }
    watch_bps = _measure_watch_bytes(bench, churn_rate)
    list_bytes = _list_bytes(bench.emulator.url)
    out["bytes"] = {
        "list_snapshot_bytes": list_bytes,
        "watch_bytes_per_s": watch_bps,
        "lists_per_hour": list_bytes * 60,
        "cache_per_hour": watch_bps * 3600 + list_bytes * 6,
    }


def _measure_watch_bytes(bench: Bench, rate: float) -> float:
    nodes = _eligible(bench)[:100]
    churn = Churn(bench, nodes, rate=rate)
    try:
        return _watch_bytes_per_s(bench.emulator.url, 20)
    finally:
        churn.stop()


def big_rss(bench: Bench, n: int, out: dict[str, Any]) -> None:
    counts = bench.seed(n, REALISTIC_MIX, seed=n + 9)
    log(f"N={n}: seeded {counts}")
    watcher = Watcher(bench, dict(bench.base_env), name="watch-big")
    try:
        sync = watcher.wait_synced(timeout=1200)
        time.sleep(3)  # a few heartbeats after the sync: the steady footprint
        rc = bench.rc
        cache_bytes = {
            key: int(rc.memory_usage(key, samples=0) or 0)
            for key in (
                cache_store.NODES,
                cache_store.PODS,
                cache_store.NPPS,
                cache_store.DEMAND,
                cache_store.PERF,
                cache_store.META,
            )
        }
        out["big"] = {
            "nodes": n,
            **counts,
            "sync_s": sync,
            "watcher_peak_rss_mb": peak_rss_mb(watcher.proc.pid),
            "cache_redis_bytes": cache_bytes,
            "cached_pods": int(rc.hlen(cache_store.PODS)),
        }
        log(f"N={n}: {out['big']}")
    finally:
        watcher.stop()


def events_ceiling(workdir: Path, rates: str, step_s: float, out: dict[str, Any], n: int) -> None:
    """The watcher against bench/churn_emulator.py (pod changes at rising rates)."""

    redis_proc = RedisServer(workdir / "redis-ceiling").start()
    kubeconfig = workdir / "kubeconfig-ceiling"
    args = [
        sys.executable, "-m", "bench.churn_emulator", "--nodes", str(n),
        "--kubeconfig", str(kubeconfig), "--redis-url", redis_proc.url,
        "--rates", rates, "--step-seconds", str(step_s),
    ]  # fmt: skip
    churn = subprocess.Popen(
        args, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert churn.stdout is not None
    assert churn.stdin is not None
    watcher_proc = None
    try:
        while churn.stdout.readline().strip() != "ready":
            pass
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("JOULIE", "CELERY"))},
            "REDIS_URL": redis_proc.url,
            "KUBECONFIG": str(kubeconfig),
            "KICK_WINDOW": "1h",
        }
        pargs = [sys.executable, "-m", "joulie_tasks", "--log-level", "WARNING", "watch"]
        watcher_proc = Proc("watch-ceiling", pargs, env=env, log=workdir / "logs" / "ceiling.log")
        state = store.RedisStore(redis_proc.url)
        cs = clients.cache(state)
        wait_for(lambda: all(cs.status().synced.values()), timeout=600, interval=0.2, what="synced")
        state.close()
        churn.stdin.write("go\n")
        churn.stdin.flush()
        samples: dict[str, list[tuple[float, int]]] = {}
        made: dict[str, tuple[float, int]] = {}
        for line in churn.stdout:
            parts = line.split()
            if parts and parts[0] == "done":
                break
            if parts and parts[0] == "lag":
                samples.setdefault(parts[1], []).append((float(parts[2]), int(parts[3])))
                made[parts[1]] = (float(parts[2]), int(parts[4]))
        churn.stdin.write("stop\n")
        churn.stdin.flush()
        result = {}
        for rate, rows in samples.items():
            half = [lag for t, lag in rows if t >= step_s / 2]
            first = [lag for t, lag in rows if t < step_s / 2]
            seconds, count = made[rate]
            result[rate] = {
                "achieved_per_s": count / seconds if seconds else 0.0,
                "max_lag": max(lag for _, lag in rows),
                "mean_lag_first_half": statistics.mean(first) if first else 0,
                "mean_lag_second_half": statistics.mean(half) if half else 0,
            }
            log(f"rate {rate}/s: {result[rate]}")
        out["ceiling"] = {"nodes": n, "step_s": step_s, "rates": result}
    finally:
        if watcher_proc is not None:
            out.setdefault("ceiling", {})["watcher_peak_rss_mb"] = peak_rss_mb(watcher_proc.pid)
            watcher_proc.stop()
        churn.kill()
        churn.wait()
        redis_proc.stop()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def _render(out: dict[str, Any], command: str, elapsed_min: float, machine: list[str]) -> str:
    n = out["cluster"]["nodes"]
    lm, cm, ref = out["list_mode"], out["cache_mode"], out["reference"]
    lat = out["reaction"]["latencies_s"]
    p50, p99 = _pct(lat, 0.5), _pct(lat, 0.99)
    byt = out["bytes"]
    big = out.get("big", {})
    ceil = out.get("ceiling", {})
    steady_cache = statistics.median(cm["wall_s"])
    lines = [
        BEGIN,
        "## Watch mode: the watch-fed cache (issue 10)",
        "",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"in {elapsed_min:.1f} min. {' '.join(machine)}",
        "",
        "Processes on these 2 cores: redis-server, the API emulator (own process), one Celery "
        "worker (prefork, concurrency 1), the watcher (`joulie-tasks watch`) and the bench "
        f"client. Cluster: {n:,} nodes, {out['cluster'].get('pods', 0):,} pods (realistic "
        "constraint mix); policy queue_aware_v1 (base 0, 4 performance pods per node), so "
        "demand decides the plan. bench/watch.py documents every measurement.",
        "",
        "| figure | target | measured | verdict |",
        "|---|---|---|---|",
        f"| steady tick, API requests (cache mode, median of {len(cm['requests'])}) | 0 | "
        f"**{int(statistics.median(cm['requests']))}** (list mode {lm['requests']}, "
        f"reference {ref['requests']:,}) | "
        f"{'met' if statistics.median(cm['requests']) == 0 else 'missed'} |",
        f"| steady tick, in-tick duration (cache mode) | ≤ 0.3 s | **{steady_cache:.2f} s** "
        f"(list mode {statistics.median(lm['wall_s']):.2f} s, reference {ref['wall_s']:.2f} s) | "
        f"{'met' if steady_cache <= 0.3 else 'missed'} |",
        f"| reaction latency p50 ({len(lat)} bursts of 20 performance pods, churn "
        f"{out['reaction']['churn_rate']:.0f} pod events/s) | ≤ 2 s | **{p50:.2f} s** | "
        f"{'met' if p50 <= 2 else 'missed'} |",
        f"| reaction latency p99 (= max of {len(lat)} samples) | ≤ 5 s | **{p99:.2f} s** | "
        f"{'met' if p99 <= 5 else 'missed'} |",
    ]
    if big:
        rss = big.get("watcher_peak_rss_mb")
        redis_mb = sum(big["cache_redis_bytes"].values()) / 2**20
        lines.append(
            f"| watcher peak RSS at {big['nodes']:,} nodes / {big.get('pods', 0):,} pods | "
            f"≤ 300 MB | **{rss:.0f} MB** (sync {big['sync_s']:.0f} s; cache in Redis "
            f"{redis_mb:.1f} MiB for {big['cached_pods']:,} counted pods) | "
            f"{'met' if rss is not None and rss <= 300 else 'missed'} |"
        )
    lines.append(
        f"| API bytes per hour at {n:,} nodes, same churn | (reported) | cache "
        f"**{byt['cache_per_hour'] / 2**20:,.0f} MiB/h** vs lists "
        f"**{byt['lists_per_hour'] / 2**20:,.0f} MiB/h** | - |"
    )
    rows: list[str] = []
    if ceil.get("rates"):
        # Kept up: the lag at the end of the step is back near zero (< 100 events, a
        # fraction of a second at these rates) instead of growing with the step.
        kept = [
            v["achieved_per_s"] for v in ceil["rates"].values() if v["mean_lag_second_half"] < 100
        ]
        best = max(kept) if kept else 0
        lines.append(
            f"| watcher pod events/s without growing lag ({ceil['nodes']:,} nodes) | ≥ 500 | "
            f"**{best:.0f}/s** (highest achieved rate whose lag stayed bounded) | "
            f"{'met' if best >= 500 else 'missed'} |"
        )
        rows = [
            "",
            f"Events/s steps ({ceil['step_s']:g} s each; lag = events the cache is behind the "
            "store, sampled twice a second):",
            "",
            "| asked/s | achieved/s | max lag | mean lag, 1st half | mean lag, 2nd half |",
            "|---|---|---|---|---|",
        ]
        for rate, v in ceil["rates"].items():
            rows.append(
                f"| {rate} | {v['achieved_per_s']:.0f} | {v['max_lag']} | "
                f"{v['mean_lag_first_half']:.1f} | {v['mean_lag_second_half']:.1f} |"
            )
    stages = out.get("cache_mode_stage_s") or {}
    if stages:
        order = ("snapshot", "classify", "plan", "guard", "write", "total")
        rows += [
            "",
            "Where a cache-fed steady tick's time goes (mean per tick, seconds; `total` is "
            "tick start to end, the rest is the Celery chain, the write-stage hand-off "
            "and the end of tick: FSM, transition stream, metrics):",
            "",
            "| " + " | ".join(k for k in order if k in stages) + " |",
            "|" + "---|" * len([k for k in order if k in stages]),
            "| " + " | ".join(f"{stages[k]:.3f}" for k in order if k in stages) + " |",
        ]
    lines += rows
    lines += ["", "Raw figures:", "", "```json", json.dumps(out, indent=1, default=str), "```", END]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.watch")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--nodes", type=int, default=5000)
    p.add_argument("--big", type=int, default=10000, help="nodes for the RSS figure (0: skip)")
    p.add_argument("--bursts", type=int, default=20)
    p.add_argument("--churn", type=float, default=25.0)
    p.add_argument("--rates", default="250,500,750,1000,1500")
    p.add_argument("--step-seconds", type=float, default=12)
    p.add_argument("--out", type=Path)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.quick:
        args.nodes, args.big, args.bursts, args.rates, args.step_seconds = (
            1000, 2000, 5, "250,500", 8,
        )  # fmt: skip
    command = "python -m bench.watch " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.monotonic()
    out: dict[str, Any] = {"platform": platform.platform()}
    with tempfile.TemporaryDirectory(prefix="joulie-watch-bench-") as tmp:
        workdir = Path(tmp)
        bench = Bench(workdir, log=log)
        try:
            steady_and_reaction(
                bench, args.nodes, bursts=args.bursts, churn_rate=args.churn, out=out
            )
            if args.big:
                big_rss(bench, args.big, out)
        finally:
            bench.close()
        if args.rates:
            events_ceiling(workdir, args.rates, args.step_seconds, out, args.nodes)
    elapsed = (time.monotonic() - started) / 60
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    text = _render(out, command.strip(), elapsed, _machine())
    print(text)
    if args.out:
        write_marked(args.out, text, begin=BEGIN, end=END)
    return 0


def _machine() -> list[str]:
    load = os.getloadavg()
    return [f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {load[0]:.2f}."]


if __name__ == "__main__":
    sys.exit(main())
