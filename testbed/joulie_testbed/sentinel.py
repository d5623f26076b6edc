"""A Sentinel-managed Redis on loopback: a master, two replicas and three Sentinels
(quorum 2), the shipped topology (deploy/sentinel).

Every process is a real ``redis-server`` (``--sentinel`` for the Sentinels) on a
free port, with short Sentinel timings (down-after 2 s) so a failover takes a few
seconds. (At 1 s, a loaded 2-core CI machine sometimes kept a healthy master from
answering in time, and the Sentinels failed it over a second time mid-test.)
``revive`` plays the part of the pod's restart: a killed server comes back
as a replica of the master the Sentinels name now, as the deploy's start script
(deploy/sentinel/) does; a server killed and never revived stays dead, and the waits
below then judge the servers still running. Every wait has a deadline; nothing sleeps
for a fixed time. The ``sentinel_cluster`` fixture (tests/conftest.py) starts one per
test.
"""

from __future__ import annotations

import functools
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from joulie_testbed.procs import free_port, wait_for

MASTER_NAME = "joulie"
#: Replicas beside the master: two, so one is left to acknowledge WAIT when one is lost.
REPLICAS = 2
DOWN_AFTER_MS = 2000
FAILOVER_TIMEOUT_MS = 3000


class Node:
    """One redis-server (master or replica) with its own directory and port."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.dir = workdir / name
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, replica_of: int | None = None) -> Node:
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "no",
            "--maxmemory-policy", "noeviction",
            "--repl-diskless-sync", "yes",
            "--repl-diskless-sync-delay", "0",
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.client().ping(), timeout=15, what=f"{self.name} on {self.port}")
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def role(self) -> str:
        return str(self.client().info("replication")["role"])

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: nothing is flushed, unreplicated writes are gone."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)  # a stopped process dies too
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class SentinelProc:
    """One ``redis-server --sentinel`` with a config file it may rewrite."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.dir = workdir / name
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, master_port: int, quorum: int, *, down_after_ms: int) -> SentinelProc:
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"logfile {self.dir / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {quorum}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        self.proc = subprocess.Popen(
            ["redis-server", str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: self.client().ping(), timeout=15, what=f"{self.name} on {self.port}")
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def master(self) -> dict[str, object]:
        state = self.client().sentinel_master(MASTER_NAME)
        assert isinstance(state, dict)
        return state

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


class SentinelCluster:
    """Master + ``replicas`` replicas (2) + 3 Sentinels; ``url`` and ``master_name``
    configure joulie-tasks."""

    def __init__(
        self, workdir: Path, *, down_after_ms: int = DOWN_AFTER_MS, replicas: int = REPLICAS
    ) -> None:
        self.down_after_ms = down_after_ms
        self.nodes = [Node(f"redis-{chr(ord('a') + i)}", workdir) for i in range(1 + replicas)]
        self.sentinels = [SentinelProc(f"sentinel-{i}", workdir) for i in range(3)]
        self.master_name = MASTER_NAME

    @property
    def url(self) -> str:
        return ";".join(f"sentinel://127.0.0.1:{s.port}" for s in self.sentinels) + "/0"

    @property
    def env(self) -> dict[str, str]:
        return {"REDIS_URL": self.url, "REDIS_SENTINEL_MASTER": self.master_name}

    def start(self) -> SentinelCluster:
        master, *replicas = self.nodes
        master.start()
        for replica in replicas:
            replica.start(replica_of=master.port)
        for replica in replicas:
            wait_for(
                functools.partial(self._link_up, replica),
                timeout=20,
                what=f"{replica.name} in sync",
            )
        for s in self.sentinels:
            s.start(master.port, quorum=2, down_after_ms=self.down_after_ms)
        self.wait_healthy()
        return self

    def stop(self) -> None:
        for s in self.sentinels:
            s.stop()
        for n in self.nodes:
            n.kill()

    # --- who is who ------------------------------------------------------------------------

    def master_port(self) -> int:
        """The master the Sentinels agree on (a majority of them)."""
        votes: dict[int, int] = {}
        for s in self.sentinels:
            try:
                addr = s.client().sentinel_get_master_addr_by_name(MASTER_NAME)
            except redis.RedisError:
                continue
            if not isinstance(addr, tuple):  # this Sentinel names no master (yet)
                continue
            port = int(addr[1])
            votes[port] = votes.get(port, 0) + 1
        port, count = max(votes.items(), key=lambda kv: kv[1], default=(0, 0))
        if count < 2:
            raise AssertionError(f"no Sentinel majority on the master: {votes}")
        return port

    def master(self) -> Node:
        port = self.master_port()
        return next(n for n in self.nodes if n.port == port)

    def replicas(self) -> list[Node]:
        """The running servers that are not the master the Sentinels name."""
        port = self.master_port()
        return [n for n in self.nodes if n.port != port and n.running]

    def replica(self) -> Node:
        return self.replicas()[0]

    def epoch(self) -> int:
        return max(int(str(s.master()["config-epoch"])) for s in self.sentinels)

    # --- waits ---------------------------------------------------------------------------

    @staticmethod
    def _link_up(replica: Node) -> bool:
        info = replica.client().info("replication")
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def wait_healthy(self, *, timeout: float = 40) -> None:
        """Every Sentinel knows the other two and sees every running replica in sync and
        usable (a failover can pick it); there is at least one. Roles are read afresh on
        every check: on a loaded machine a short down-after can trigger a second
        failover while we wait."""

        def ready() -> bool:
            master, replicas = self.master(), self.replicas()
            if master.role() != "master" or not replicas:
                return False
            if not all(self._link_up(r) for r in replicas):
                return False
            for s in self.sentinels:
                state = s.master()
                if int(str(state["num-other-sentinels"])) < 2 or "s_down" in str(state["flags"]):
                    return False
                usable = {
                    int(r["port"])
                    for r in s.client().sentinel_slaves(MASTER_NAME)
                    if not (set(str(r["flags"]).split(",")) & {"s_down", "disconnected"})
                    and r.get("master-link-status") == "ok"
                }
                if not {r.port for r in replicas} <= usable:
                    return False
            return True

        wait_for(ready, timeout=timeout, interval=0.2, what="a healthy Sentinel group")

    def wait_failover(self, old_port: int, *, timeout: float = 30) -> Node:
        """Wait until a majority names another master and it answers as one."""

        def switched() -> Node | None:
            port = self.master_port()
            if port == old_port:
                return None
            node = next(n for n in self.nodes if n.port == port)
            return node if node.role() == "master" else None

        return wait_for(switched, timeout=timeout, interval=0.05, what="the failover")

    def wait_settled(self, *, timeout: float = 30) -> None:
        """Every Sentinel names the same master and none is still in a failover."""

        def settled() -> bool:
            ports = {int(str(s.master()["port"])) for s in self.sentinels}
            busy = any("failover" in str(s.master()["flags"]) for s in self.sentinels)
            return len(ports) == 1 and not busy

        wait_for(settled, timeout=timeout, interval=0.1, what="the Sentinels to settle")

    def wait_replicated(self, *, count: int = 1, timeout: float = 30) -> Node:
        """Wait until the master the Sentinels name has ``count`` replicas attached and in
        sync (what the store's WAIT needs); return it."""

        def attached() -> Node | None:
            master = self.master()
            info = master.client().info("replication")
            if info.get("role") != "master":
                return None
            ok = [
                r
                for r in self.replicas()
                if r.client().info("replication").get("master_port") == master.port
                and self._link_up(r)
            ]
            return master if len(ok) >= count else None

        return wait_for(attached, timeout=timeout, interval=0.05, what=f"{count} replica(s)")

    def revive(self, node: Node) -> None:
        """Start a dead server again as a replica of the current master (the pod restart)."""
        self.wait_settled()
        current = self.master_port()
        assert current != node.port, "the Sentinels still name the dead server as master"
        node.start(replica_of=current)
        wait_for(lambda: self._link_up(node), timeout=20, what=f"{node.name} in sync")

    @contextmanager
    def stopped(self, node: Node) -> Iterator[None]:
        """SIGSTOP the server for the body, SIGCONT after (a stall / partition)."""
        node.signal(signal.SIGSTOP)
        try:
            yield
        finally:
            node.signal(signal.SIGCONT)


def failover_once(cluster: SentinelCluster) -> float:
    """SIGKILL the master, wait for the new one, revive the old as replica; return the
    seconds from the kill until the new master answered as master."""
    old = cluster.master()
    started = time.monotonic()
    old.kill()
    cluster.wait_failover(old.port)
    took = time.monotonic() - started
    cluster.revive(old)
    cluster.wait_healthy()
    return took
