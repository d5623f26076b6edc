"""The demo's child processes: a private redis-server, a real worker and a real beat.

Why separate processes (not threads): the demo runs the operator exactly as it is
deployed — ``python -m joulie_tasks worker`` / ``beat`` talking to Redis and, through
a kubeconfig, to the API emulator — so what a newcomer watches is the real thing.

Each child gets its own session (process group): a Ctrl-C at the terminal reaches
only the demo, which then stops the children in order, and killing a group also
reaches a worker's prefork pool. Readiness is read from the child's log with a
deadline, never a fixed sleep. ``Critical`` defers SIGINT/SIGTERM while a child is
being started and registered, so an interrupt can never orphan one.
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
from types import FrameType, TracebackType
from typing import Any

import redis

STOP_TIMEOUT_S = 10.0


class DemoError(Exception):
    """Raised when the demo cannot start or a child dies; the message is one line."""


class RedisMissing(DemoError):
    """Raised when no redis-server binary is on PATH."""


class Terminated(BaseException):
    """Raised in the main thread when the demo receives SIGTERM."""


def child_environment(base: Mapping[str, str], drop: set[str]) -> dict[str, str]:
    """A child's environment: ``base`` without ``drop``ped names or Celery/Joulie knobs.

    ``base`` is the demo's own environment (passed in by the caller: only config.py
    reads ``os.environ`` by itself); the operator settings are then set explicitly,
    so a user's exported NODE_SELECTOR or POLICY_TYPE cannot change what the demo shows.
    """
    keep = {
        k: v
        for k, v in base.items()
        if k.upper() not in drop and not k.upper().startswith(("CELERY", "JOULIE"))
    }
    keep["PYTHONUNBUFFERED"] = "1"
    return keep


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``predicate`` until true; DemoError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Critical:
    """Defer SIGINT and SIGTERM during a block; re-deliver the first one at its end."""

    def __init__(self) -> None:
        self._pending: int | None = None
        self._saved: dict[int, Any] = {}

    def _hold(self, signum: int, frame: FrameType | None) -> None:
        if self._pending is None:
            self._pending = signum

    def __enter__(self) -> Critical:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._saved[sig] = signal.signal(sig, self._hold)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        if self._pending is not None and exc is None:
            signal.raise_signal(self._pending)


class Child:
    """One child process in its own session, output to ``log``."""

    def __init__(
        self, name: str, args: list[str], *, env: Mapping[str, str], log: Path, cwd: Path
    ) -> None:
        self.name = name
        self.log_path = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                args,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check(self) -> None:
        """DemoError (with the log's tail) when the child has exited."""
        if not self.alive():
            raise DemoError(
                f"{self.name} exited with code {self.proc.returncode}; "
                f"its log {self.log_path} ends with:\n{self.log_tail()}"
            )

    def wait_for_log(self, text: str, *, timeout: float) -> None:
        def seen() -> bool:
            self.check()
            try:
                return text in self.log_path.read_text(errors="replace")
            except OSError:
                return False

        wait_until(seen, timeout=timeout, what=f"{text!r} in {self.log_path}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the whole group, SIGKILL it after ``timeout``; reap the child."""
        for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
            if not _group_alive(self.proc.pid):
                return
        # The leader is gone but pool children may linger briefly: give them a moment.
        with contextlib.suppress(DemoError):
            wait_until(lambda: not _group_alive(self.proc.pid), timeout=timeout, what="the group")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def spawn_redis(workdir: Path, *, env: Mapping[str, str]) -> tuple[Child, str]:
    """Start a private redis-server on a free loopback port (no persistence), not awaited.

    Returns (child, url); call :func:`await_redis` next. Split in two so the caller can
    record the child before waiting: a failed wait must still stop it.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisMissing("redis-server is not installed (scripts/bootstrap.sh installs it)")
    port = free_port()
    data = workdir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    args = [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data),
        "--save", "",
        "--appendonly", "no",
        "--logfile", "",
    ]  # fmt: skip
    child = Child("redis-server", args, env=env, log=workdir / "redis.log", cwd=workdir)
    return child, f"redis://127.0.0.1:{port}/0"


def await_redis(child: Child, url: str, *, timeout: float = 15.0) -> None:
    """Wait until the redis-server at ``url`` answers PING (DemoError if it dies or not)."""
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)

    def answers() -> bool:
        child.check()
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    try:
        wait_until(answers, timeout=timeout, what=f"redis-server at {url}")
    finally:
        client.close()


def check_shared_redis(url: str) -> str | None:
    """Why a Redis the user runs cannot host the demo, or None when it can.

    The demo's beat and worker share the broker queue with any operator already
    using that Redis (and would run each other's ticks), so only an empty database
    is accepted.
    """
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        size = int(client.dbsize())
    except redis.RedisError as e:
        return f"Redis at {url} does not answer ({type(e).__name__})"
    finally:
        client.close()
    if size:
        return f"Redis at {url} holds {size} keys; the demo needs an empty database"
    return None


def start_operator(
    kind: str, *, env: Mapping[str, str], workdir: Path, log_level: str = "INFO"
) -> Child:
    """Start ``joulie-tasks worker``, ``beat`` or ``watch`` (not yet awaited; see
    ``await_ready``)."""
    args = [sys.executable, "-m", "joulie_tasks", "--log-level", log_level, kind]
    if kind == "worker":
        args += ["--pool=prefork", "--concurrency=2", "--without-mingle", "--without-gossip"]
        args += ["-n", "demo@%h"]
    return Child(kind, args, env=env, log=workdir / f"{kind}.log", cwd=workdir)


READY_TEXT = {"worker": "ready.", "beat": "beat: Starting", "watch": "started"}
