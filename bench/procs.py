"""The real processes a benchmark run needs: redis-server, the emulator, Celery workers.

Each is a separate OS process (the machine has few cores: an emulator inside the
benchmark process would share its GIL with the reference client). Every start waits
for a ready signal with a deadline; every stop kills the process group it started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import redis

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    predicate: Callable[[], T | None], *, timeout: float, interval: float = 0.01, what: str
) -> T:
    """Poll ``predicate`` until it returns something truthy; raise after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # not checkable yet
            last = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} ({last})")


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set) of a live process, in MiB; None when unreadable."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def children(pid: int) -> list[int]:
    try:
        raw = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in raw.split()]


class Proc:
    """A child process in its own session, its output in a log file."""

    def __init__(
        self, name: str, args: list[str], *, env: Mapping[str, str], log: Path, cwd: Path = REPO
    ) -> None:
        self.name = name
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            args,
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, *, timeout: float) -> str:
        def seen() -> str | None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log()[-3000:]}")
            log = self.log()
            return log if text in log else None

        try:
            return wait_for(seen, timeout=timeout, interval=0.05, what=f"{text!r} from {self.name}")
        except TimeoutError as e:
            raise RuntimeError(f"{e}\n--- {self.name} log ---\n{self.log()[-3000:]}") from None

    def stop(self, sig: int = signal.SIGTERM, *, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()


class RedisProc:
    """A private redis-server on a free loopback port (no persistence)."""

    def __init__(self, workdir: Path) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (scripts/bootstrap.sh installs it)")
        self.port = free_port()
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        args = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(workdir),
            "--save", "",
            "--appendonly", "no",
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        self.proc = Proc("redis", args, env=os.environ, log=workdir / "redis.log")
        client = self.client()
        wait_for(client.ping, timeout=15, what=f"redis on port {self.port}")
        client.close()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=10)

    def stop(self) -> None:
        self.proc.stop()


class EmulatorProc:
    """``python -m joulie_tasks.emulator`` in its own process; kubeconfig written first."""

    def __init__(self, workdir: Path, *, latency_ms: float = 0) -> None:
        self.kubeconfig = workdir / "kubeconfig"
        args = [
            sys.executable, "-m", "joulie_tasks.emulator",
            "--kubeconfig", str(self.kubeconfig),
            "--latency-ms", str(latency_ms),
        ]  # fmt: skip
        self.proc = Proc("emulator", args, env=os.environ, log=workdir / "emulator.log")
        log = self.proc.wait_for_log("emulator listening on ", timeout=60)
        line = next(x for x in log.splitlines() if "emulator listening on " in x)
        self.url = line.split("emulator listening on ", 1)[1].strip()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        self.proc.stop()


class Workers:
    """N Celery worker processes (prefork, one child each) with one environment."""

    def __init__(self, count: int, *, env: Mapping[str, str], workdir: Path, tag: str) -> None:
        self.procs: list[Proc] = []
        for i in range(1, count + 1):
            name = f"w{i}"
            args = [
                sys.executable, "-m", "joulie_tasks", "--log-level", "WARNING",
                "worker", "--pool=prefork", "--concurrency=1",
                "--without-mingle", "--without-gossip", "--loglevel=INFO",
                "-n", f"{name}-{tag}@%h",
            ]  # fmt: skip
            self.procs.append(Proc(name, args, env=env, log=workdir / f"{tag}-{name}.log"))
        for proc in self.procs:
            proc.wait_for_log("ready.", timeout=90)

    def pool_pids(self) -> list[int]:
        """The prefork children, which run the tasks."""
        return [c for p in self.procs for c in children(p.pid)]

    def peak_rss_mb(self) -> list[float]:
        """Peak RSS of every task-running child process, MiB."""
        return [r for r in (peak_rss_mb(pid) for pid in self.pool_pids()) if r is not None]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            proc.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far (0 when unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
