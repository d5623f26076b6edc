"""The one process harness: free ports, waits, redis-server, the emulator, operator processes.

Used alike by the tests (``Stack``), the benchmarks (``Workers``, ``EmulatorProc``) and the
demo (``spawn_redis``, ``start_operator``). Every child is a real OS process in its own
session (process group): killing the group also reaches a worker's prefork pool, and a
Ctrl-C at the terminal reaches only the parent. Readiness is read from the child's log
or its port with a deadline — never a fixed sleep.

Errors: ``HarnessError`` is the root; a timed-out wait is also an ``AssertionError`` (a
test failure) and a ``TimeoutError`` (what a benchmark catches).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import redis

T = TypeVar("T")
STOP_TIMEOUT_S = 15.0
#: The operator's command line: ``python -m joulie_tasks …``.
OPERATOR = (sys.executable, "-m", "joulie_tasks")
#: What each operator role prints once it is ready.
READY_TEXT = {"worker": "ready.", "beat": "beat: Starting", "watch": "started"}


class HarnessError(Exception):
    """Raised when a child process cannot start or dies; the message is one line (+ log tail)."""


class RedisMissing(HarnessError):
    """Raised when no redis-server binary is on PATH."""


class ChildExited(HarnessError, AssertionError):
    """Raised when a child exits while something waits on it."""


class WaitTimeout(HarnessError, TimeoutError, AssertionError):
    """Raised when a condition is not met within its deadline."""


def free_port() -> int:
    """A TCP port free on loopback right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_url(
    target: str | urllib.request.Request,
    *,
    timeout: float,
    context: ssl.SSLContext | None = None,
) -> bytes:
    """The body of a successful answer. An ``HTTPError`` is closed before it is raised
    again: one that a :func:`wait_for` poll drops would otherwise leave its socket to the
    garbage collector, whose unclosed-socket ResourceWarning the test settings turn into
    a failure of whichever test is running then."""
    try:
        with urllib.request.urlopen(target, timeout=timeout, context=context) as response:
            body: bytes = response.read()
    except urllib.error.HTTPError as e:
        e.close()
        raise
    return body


def wait_for(
    predicate: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "",
) -> T:
    """Poll ``predicate`` until it returns something truthy and return it.

    An exception from ``predicate`` counts as "not yet" (the condition may not be
    checkable yet), except ``ChildExited``, which ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except ChildExited:
            raise
        except Exception as e:
            last_error = e
        time.sleep(interval)
    raise WaitTimeout(
        f"timed out after {timeout:.0f}s waiting for {what or predicate}: {last_error}"
    )


def children(pid: int) -> list[int]:
    """PIDs of a live process's direct children (a worker's prefork pool)."""
    try:
        raw = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in raw.split()]


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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far (0 when unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Proc:
    """One child process in its own session, stdout and stderr to ``log``."""

    def __init__(
        self,
        name: str,
        args: list[str],
        *,
        env: Mapping[str, str],
        log: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                args,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )

    @classmethod
    def operator(cls, name: str, args: list[str], *, env: Mapping[str, str], log: Path) -> Proc:
        """``python -m joulie_tasks <args>`` (worker, beat, watch, metrics, …)."""
        return cls(name, [*OPERATOR, *args], env=env, log=log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def check(self) -> None:
        """ChildExited (with the log's tail) when the child has exited."""
        if not self.alive:
            raise ChildExited(
                f"{self.name} exited with code {self.proc.returncode}; "
                f"its log {self.log_path} ends with:\n{self.log_tail()}"
            )

    def wait_for_log(self, text: str, *, timeout: float = 30.0) -> str:
        """Wait until ``text`` is in the log; return the log."""

        def seen() -> str | None:
            self.check()
            log = self.log()
            return log if text in log else None

        try:
            return wait_for(seen, timeout=timeout, what=f"{text!r} in {self.name}'s log")
        except WaitTimeout as e:
            raise WaitTimeout(f"{e}\n--- {self.name} log ---\n{self.log()[-3000:]}") from None

    def children(self) -> list[int]:
        """PIDs of the process's direct children (the prefork pool)."""
        return children(self.proc.pid)

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the whole group (SIGSTOP freezes it, SIGCONT resumes it)."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def kill(self, sig: int = signal.SIGKILL, *, timeout: float = STOP_TIMEOUT_S) -> None:
        """Signal the whole group; SIGKILL it after ``timeout``; reap the leader and let
        the pool children go (bounded)."""
        for signum in (sig, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signum)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                continue
            break
        with contextlib.suppress(WaitTimeout):
            wait_for(lambda: not _group_alive(self.proc.pid), timeout=timeout, what="the group")

    def stop(self, sig: int = signal.SIGTERM, *, timeout: float = STOP_TIMEOUT_S) -> None:
        self.kill(sig, timeout=timeout)


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
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisMissing("redis-server is not installed (scripts/bootstrap.sh installs it)")
        self.binary = binary
        self.port = free_port()
        self.dir = workdir
        self.appendonly = appendonly
        #: ``--requirepass``; the URL then carries it (``redis://:secret@…``).
        self.password = password
        #: (cert, key, CA) files: serve TLS only on ``port`` (plain TCP is switched off).
        self.tls = tls
        self.log_path = workdir / "redis.log"
        self.child: Proc | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls is not None:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_cert_reqs=required&ssl_ca_certs={self.tls[2]}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.child is not None
        return self.child.pid

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return None if self.child is None else self.child.proc

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

    def spawn(self, *, env: Mapping[str, str] | None = None) -> RedisServer:
        """Start the process without waiting (see ``await_ready``): a caller can record
        it first, so a failed wait still stops it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            *self._args(),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        self.child = Proc(
            "redis-server",
            args,
            env=os.environ if env is None else env,
            log=self.dir / "redis.out",
            cwd=self.dir,
        )
        return self

    def await_ready(self, *, timeout: float = 15.0) -> RedisServer:
        """Wait until the server answers PING (ChildExited if it dies first)."""
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)

        def answers() -> bool:
            assert self.child is not None
            self.child.check()
            return bool(client.ping())

        try:
            wait_for(answers, timeout=timeout, what=f"redis on port {self.port}")
        finally:
            client.close()
        return self

    def start(self) -> RedisServer:
        return self.spawn().await_ready()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.child is not None:
            self.child.stop(sig, timeout=10)
        self.child = None

    def restart(self, *, wipe: bool = False) -> None:
        """Stop (SIGTERM: an append-only file is flushed) and start again on the same port.

        ``wipe`` deletes the data directory's files first, so nothing survives.
        """
        self.stop()
        if wipe:
            for f in self.dir.glob("*"):
                if f.name not in ("redis.log", "redis.out"):
                    shutil.rmtree(f) if f.is_dir() else f.unlink()
        self.start()

    @property
    def running(self) -> bool:
        return self.child is not None and self.child.alive

    def client(self, *, socket_timeout: float = 10) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=socket_timeout)


class EmulatorProc:
    """``python -m joulie_testbed.emulator`` in its own process; kubeconfig written first."""

    def __init__(self, workdir: Path, *, latency_ms: float = 0) -> None:
        self.kubeconfig = workdir / "kubeconfig"
        args = [
            sys.executable, "-m", "joulie_testbed.emulator",
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
        self.proc.stop(timeout=20)


def start_operator(
    kind: str,
    *,
    env: Mapping[str, str],
    log: Path,
    node_name: str | None = None,
    concurrency: int = 1,
    log_level: str | None = None,
) -> Proc:
    """Start ``joulie-tasks worker``, ``beat``, ``watch`` … (not awaited: ``READY_TEXT``)."""
    args = ["--log-level", log_level] if log_level else []
    args.append(kind)
    if kind == "worker":
        args += ["--pool=prefork", f"--concurrency={concurrency}"]
        args += ["--without-mingle", "--without-gossip", "-n", f"{node_name or kind}@%h"]
    return Proc.operator(kind, args, env=env, log=log)


class Workers:
    """N Celery worker processes (prefork, one child each) with one environment."""

    def __init__(self, count: int, *, env: Mapping[str, str], workdir: Path, tag: str) -> None:
        self.procs: list[Proc] = []
        for i in range(1, count + 1):
            name = f"w{i}"
            args = [
                "--log-level", "WARNING", "worker", "--pool=prefork", "--concurrency=1",
                "--without-mingle", "--without-gossip", "--loglevel=INFO", "-n", f"{name}-{tag}@%h",
            ]  # fmt: skip
            log = workdir / f"{tag}-{name}.log"
            self.procs.append(Proc.operator(name, args, env=env, log=log))
        for proc in self.procs:
            proc.wait_for_log("ready.", timeout=90)

    def pool_pids(self) -> list[int]:
        """The prefork children, which run the tasks."""
        return [c for p in self.procs for c in p.children()]

    def peak_rss_mb(self) -> list[float]:
        """Peak RSS of every task-running child process, MiB."""
        return [r for r in (peak_rss_mb(pid) for pid in self.pool_pids()) if r is not None]

    def stop(self) -> None:
        for proc in self.procs:  # all at once: they shut down in parallel
            proc.signal_group(signal.SIGTERM)
        for proc in self.procs:
            proc.stop(timeout=20)


class Stack:
    """Redis + a kubeconfig (emulator or real server) + any number of workers and beats."""

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
        proc = Proc.operator(name, args, env=self.env, log=self.tmp / f"{name}.log")
        self.procs.append(proc)
        if ready is not None:
            proc.wait_for_log(ready, timeout=60)
        return proc

    def run_cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*OPERATOR, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
