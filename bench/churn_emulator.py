"""``python -m bench.churn_emulator``: the API emulator plus a pod-event generator, in one
process, for the watcher's events/s ceiling (bench/watch.py).

Seeds a cluster, writes a kubeconfig, prints ``ready``, waits for a line on stdin,
then runs each ``--rates`` step for ``--step-seconds``: that many pod changes per
second, made directly in the store (80 % a label bump, 20 % a phase flip between
Running and Succeeded, which changes the pod's contribution to the demand). Twice a
second it prints ``lag <rate> <seconds into step> <events behind>``, where events
behind = the store's resourceVersion minus the cache's ``rv:pods`` in Redis (only
pods change, one resourceVersion per change).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any

import redis

from joulie_tasks.adapters import cache_store
from joulie_testbed.emulator import Emulator, resources


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, default=5000)
    p.add_argument("--pods-per-node", type=float, default=10)
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--rates", default="250,500,1000,2000")
    p.add_argument("--step-seconds", type=float, default=15)
    args = p.parse_args()
    emu = Emulator()
    emu.seed(args.nodes, args.pods_per_node, seed=3)
    emu.start()
    emu.write_kubeconfig(args.kubeconfig)
    pods = [
        (e.obj["metadata"]["namespace"], e.obj["metadata"]["name"])
        for e in emu.store.objects(resources.PODS)
    ]
    print("ready", flush=True)
    sys.stdin.readline()
    r = redis.Redis.from_url(args.redis_url)
    rng = random.Random(1)

    def bump(obj: dict[str, Any]) -> None:
        if rng.random() < 0.2:
            status = obj.setdefault("status", {})
            status["phase"] = "Succeeded" if status.get("phase") == "Running" else "Running"
        else:
            labels = obj["metadata"].setdefault("labels", {})
            labels["churn"] = str(int(labels.get("churn", "0")) + 1)

    for rate in (float(x) for x in args.rates.split(",")):
        start = time.monotonic()
        made = 0
        next_report = start + 0.5
        while (now := time.monotonic()) - start < args.step_seconds:
            due = int((now - start) * rate)
            while made < due:
                ns, name = pods[rng.randrange(len(pods))]
                emu.store.mutate(resources.PODS, ns, name, bump)
                made += 1
            if now >= next_report:
                cached = r.hget(cache_store.META, "rv:pods")
                lag = int(emu.store.resource_version) - int(cached or 0)
                print(f"lag {rate:g} {now - start:.1f} {lag} {made}", flush=True)
                next_report += 0.5
            time.sleep(0.002)
    print("done", flush=True)
    sys.stdin.readline()
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
