"""Real processes for integration tests: redis-server, Celery workers and beat.

Each helper starts a real OS process and waits for an event it prints (or for
the port to answer) with a deadline — never a fixed sleep. Everything is torn
down (process group killed) even when a test fails.
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
from typing import Any, TypeVar

import redis

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    predicate: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # the condition may not be checkable yet
            last_error = e
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what or predicate}: {last_error}"
    )


class RedisServer:
    """A private redis-server on a free loopback port, in its own directory."""

    def __init__(
        self,
        workdir: Path,
        *,
        appendonly: bool = False,
        password: str | None = None,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (scripts/bootstrap.sh installs it)")
        self.port = free_port()
        self.dir = workdir
        self.appendonly = appendonly
        #: ``--requirepass``; the URL then carries it (``redis://:secret@…``).
        self.password = password
        #: (cert, key, CA) files: serve TLS only on ``port`` (plain TCP is switched off).
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls is not None:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_cert_reqs=required&ssl_ca_certs={self.tls[2]}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def _args(self) -> list[str]:
        args = ["--requirepass", self.password] if self.password else []
        if self.tls is not None:
            cert, key, ca = self.tls
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert)]
            args += ["--tls-key-file", str(key), "--tls-ca-cert-file", str(ca)]
            args += ["--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        return args

    def start(self) -> RedisServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [
            "redis-server",
            *self._args(),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        wait_for(lambda: client.ping(), timeout=15, what=f"redis on port {self.port}")
        client.close()
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, *, wipe: bool = False) -> None:
        """Stop (SIGTERM: an append-only file is flushed) and start again on the same port.

        ``wipe`` deletes the data directory's files first, so nothing survives.
        """
        self.stop()
        if wipe:
            for f in self.dir.glob("*"):
                if f.name != "redis.log":
                    shutil.rmtree(f) if f.is_dir() else f.unlink()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)


class Proc:
    """One joulie-tasks process (worker, beat, …) with its log captured to a file."""

    def __init__(self, name: str, args: list[str], *, env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "joulie_tasks", *args],
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,  # its own process group: we can kill the pool too
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, *, timeout: float = 30.0) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.log()[-3000:]}")
            return text in self.log()

        try:
            wait_for(seen, timeout=timeout, what=f"{text!r} in {self.name}'s log")
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- {self.name} log ---\n{self.log()[-3000:]}") from None

    def children(self) -> list[int]:
        """PIDs of the process's direct children (the prefork pool)."""
        try:
            out = subprocess.run(
                ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False
            ).stdout
        except FileNotFoundError:
            return []
        return [int(p) for p in out.split()]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (main process and pool children)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the whole group (SIGSTOP freezes it, SIGCONT resumes it)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


class Stack:
    """Redis + the HTTP API emulator's kubeconfig + any number of workers and beats."""

    def __init__(self, *, tmp: Path, redis_server: RedisServer, kubeconfig: Path) -> None:
        self.tmp = tmp
        self.redis = redis_server
        self.kubeconfig = kubeconfig
        self.procs: list[Proc] = []
        self.env: dict[str, str] = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("JOULIE", "CELERY"))},
            "REDIS_URL": redis_server.url,
            "KUBECONFIG": str(kubeconfig),
            "RECONCILE_INTERVAL": "1h",
            "LOCK_TTL": "5s",
            "KUBE_REQUEST_TIMEOUT": "5s",
            "WRITE_BATCH_SIZE": "10",
            "PYTHONUNBUFFERED": "1",
        }

    def configure(self, **settings: Any) -> None:
        """Set env for processes started from now on (``write_batch_size=5`` …)."""
        for key, value in settings.items():
            self.env[key.upper()] = str(value)

    def start_worker(
        self, name: str = "w1", *, concurrency: int = 1, wait_ready: bool = True
    ) -> Proc:
        args = ["worker", "--pool=prefork", f"--concurrency={concurrency}", "-n", f"{name}@%h"]
        args += ["--without-mingle", "--without-gossip"]
        return self.start_proc(name, args, ready="ready." if wait_ready else None)

    def start_beat(self, name: str = "beat") -> Proc:
        return self.start_proc(name, ["beat"], ready="beat: Starting")

    def start_proc(self, name: str, args: list[str], *, ready: str | None) -> Proc:
        """Start ``joulie-tasks <args>`` and (unless ``ready`` is None) wait for that log text."""
        proc = Proc(name, args, env=self.env, log=self.tmp / f"{name}.log")
        self.procs.append(proc)
        if ready is not None:
            proc.wait_for_log(ready, timeout=60)
        return proc

    def run_cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "joulie_tasks", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            check=False,
        )

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
