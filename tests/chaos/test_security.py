"""Security: JSON-only serialisation (a pickle payload on the queue is refused and
logged, never executed); Redis with a password and over TLS (``rediss://``), the
password appearing in no log and no metrics output.
"""

from __future__ import annotations

import pickle
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Exchange, Producer

from joulie_tasks.adapters import store
from joulie_testbed.chaos import Driver, problems
from joulie_testbed.emulator import Emulator
from joulie_testbed.procs import Stack, free_port, read_url, wait_for
from joulie_testbed.ticks import TickClient
from tests.chaos.reliability import Row
from tests.chaos.scenario import Chaos

SECRET = "s3cr3t-Pa55word"


class _Evil:
    """Unpickling this creates ``path``: proof that a payload was executed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def test_a_pickle_payload_on_the_queue_is_refused_and_never_executed(
    chaos: Chaos, stack: Stack, emulator: Emulator, tmp_path: Path
) -> None:
    emulator.seed(4, 0, seed=81)
    worker = stack.start_worker("w1")
    marker = tmp_path / "pwned"

    # When a pickled joulie.tick message is put straight onto the worker's queue
    body = pickle.dumps(((), {"scheduled_at": None}, {}, _Evil(marker)))
    task_id = str(uuid.uuid4())
    with Connection(stack.redis.url) as conn:
        Producer(conn).publish(
            body,
            exchange=Exchange("celery", type="direct"),
            routing_key="celery",
            serializer=None,
            content_type="application/x-python-serialize",
            content_encoding="binary",
            headers={"task": "joulie.tick", "id": task_id, "lang": "py", "argsrepr": "()"},
        )

    # Then the worker refuses it, logs why, and keeps working
    wait_for(
        lambda: (
            "ContentDisallowed" in worker.log()
            or "Refusing to deserialize untrusted content" in worker.log()
        ),
        timeout=30,
        what="the refusal in the worker log",
    )
    drive = chaos.driver()
    n = drive.converge(max_ticks=1)
    found = chaos.problems()
    if marker.exists():
        found.append("the pickle payload was executed")
    chaos.row.fill(
        drive,
        found,
        fault="pickle payload on the queue",
        action=(
            "a joulie.tick message with content type application/x-python-serialize whose "
            "body creates a file when unpickled, published straight to the queue"
        ),
        behaviour=(
            "kombu refused to deserialize it (accept_content is JSON only) and logged "
            "ContentDisallowed; nothing executed; the worker went on ticking"
        ),
    )
    assert worker.alive
    assert n == 1
    assert found == []


def _scrape(port: int) -> str:
    return read_url(f"http://127.0.0.1:{port}/metrics", timeout=5).decode()


@pytest.mark.parametrize("redis_server", [{"password": SECRET}], indirect=True, ids=["auth"])
def test_redis_with_a_password_never_shows_it(
    chaos: Chaos, stack: Stack, emulator: Emulator, ticks: TickClient
) -> None:
    assert SECRET in stack.env["REDIS_URL"]
    emulator.seed(4, 0, seed=82)
    port = free_port()
    stack.configure(metrics_addr=f"127.0.0.1:{port}")
    worker = stack.start_worker("w1")
    metrics_proc = stack.start_proc("metrics", ["metrics"], ready="metrics served at")
    drive = chaos.driver()
    n = drive.converge(max_ticks=1)
    scraped = wait_for(lambda: _scrape(port), what="a scrape")
    found = chaos.problems()

    # When Redis goes away, errors naming its URL are logged (worker, metrics, CLI)
    stack.redis.stop()
    wait_for(lambda: "joulie_redis_up 0.0" in _scrape(port), what="metrics without Redis")
    cli = stack.run_cli("reconcile", "--once")
    wait_for(lambda: "Cannot connect to redis" in worker.log(), what="the worker's error")
    stack.redis.start()

    texts = {
        "worker log": worker.log(),
        "metrics log": metrics_proc.log(),
        "metrics output": scraped,
        "cli stderr": cli.stderr,
    }
    found += [f"password in {where}" for where, text in texts.items() if SECRET in text]
    chaos.row.fill(
        drive,
        found,
        fault="Redis with a password",
        action=(
            "redis-server --requirepass; REDIS_URL=redis://:<password>@…; Redis then stopped "
            "so every process logs connection errors"
        ),
        behaviour=(
            "ticks converged; worker banner, connection errors, metrics output and CLI error "
            "show the URL as redis://:**@… or redis://:***@…, never the password"
        ),
    )
    assert cli.returncode == 1
    assert "***@" in cli.stderr
    assert n == 1
    assert found == []


def _certificates(where: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1, made with openssl."""
    where.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (
        where / n for n in ("ca.key", "ca.crt", "s.key", "s.csr", "s.crt")
    )
    ext = where / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    run = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=chaos-ca", "-keyout", ca_key, "-out", ca],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", key, "-out", csr],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
         "-CAcreateserial", "-days", "1", "-extfile", ext, "-out", cert],
    ]  # fmt: skip
    for args in run:
        subprocess.run([str(a) for a in args], check=True, capture_output=True, timeout=60)
    return cert, key, ca


@pytest.fixture
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    probe = subprocess.run(
        ["redis-server", "--tls-port", "0", "--port", "0", "--test-memory", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    if "tls" in (probe.stderr + probe.stdout).lower() and "not" in probe.stderr.lower():
        pytest.skip("this redis-server was built without TLS")
    return _certificates(tmp_path_factory.mktemp("tls"))


def test_redis_over_tls_with_rediss_urls(
    tmp_path: Path,
    tls_files: tuple[Path, Path, Path],
    emulator: Emulator,
    reliability: Row,
) -> None:
    from joulie_testbed.procs import RedisServer
    from joulie_testbed.ticks import TickClient as Client

    server = RedisServer(tmp_path / "redis-tls", tls=tls_files, password=SECRET).start()
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    stack = Stack(tmp=tmp_path, redis_server=server, kubeconfig=kubeconfig)
    state = store.RedisStore(server.url)
    client = Client(server.url, state)
    try:
        assert server.url.startswith("rediss://")
        emulator.seed(4, 0, seed=83)
        worker = stack.start_worker("w1")
        drive = Driver(client, state, emulator, stack.env)
        n = drive.converge(max_ticks=1)
        found = problems(state, emulator, stack.env)
        if SECRET in worker.log():
            found.append("password in the worker log")
        reliability.fill(
            drive,
            found,
            fault="Redis over TLS (rediss://)",
            action=(
                "redis-server with TLS only (self-signed CA made by openssl) and a password; "
                "REDIS_URL=rediss://:<password>@127.0.0.1:<port>/0?ssl_cert_reqs=required&"
                "ssl_ca_certs=<ca>"
            ),
            behaviour=(
                "broker, result backend and state store all connected over TLS, verifying the "
                "server certificate; tick converged; password never logged"
            ),
        )
        assert n == 1
        assert found == []
    finally:
        stack.stop()
        client.app.close()
        state.close()
        server.stop()
