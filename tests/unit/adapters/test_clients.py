"""The wiring root (adapters/clients.py) is the one place clients are built.

Covers: no module of the operator (or its worker/beat entry points) builds a Redis
store, a Redis or Sentinel client, a Kubernetes gateway or the cache view itself (the
source is read, so a new entry point cannot slip past); every CLI subcommand reaches
the root with the Sentinel settings whole; the root wires a Sentinel URL only with its
master (and the replica acknowledgement), a plain URL as before; a store asked for a
Sentinel URL without a master says what is missing; Celery's broker comes from the root.
No socket is opened: redis-py and the official client connect on first use.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

from joulie_tasks import config
from joulie_tasks.adapters import clients, kube, store
from joulie_tasks.cli import main as cli
from joulie_tasks.queue import celery_app

REPO = Path(__file__).resolve().parents[3]
SOURCES = [REPO / "joulie_tasks", REPO / "worker", REPO / "beat"]
ROOT = REPO / "joulie_tasks" / "adapters" / "clients.py"
#: Callables that build a client; only the root (and each one's own module) may call them.
BUILDERS = {
    "RedisStore": "joulie_tasks/adapters/store.py",
    "build_gateway": "joulie_tasks/adapters/kube.py",
    "CacheStore": "joulie_tasks/adapters/cache_store.py",
    "Redis": "joulie_tasks/adapters/store.py",
    "StrictRedis": "joulie_tasks/adapters/store.py",
    "from_url": "joulie_tasks/adapters/store.py",
    "Sentinel": "joulie_tasks/adapters/store.py",
    "ApiGateway": "joulie_tasks/adapters/kube.py",
    "ApiClient": "joulie_tasks/adapters/kube.py",
}
SENTINEL_URL = "sentinel://127.0.0.1:1;sentinel://127.0.0.1:2;sentinel://127.0.0.1:3/0"


def sentinel_settings() -> config.Settings:
    return config.read_settings(
        {"REDIS_URL": SENTINEL_URL, "REDIS_SENTINEL_MASTER": "joulie", "KUBE_POOL_SIZE": "2"}
    )


def builder_calls(path: Path) -> list[tuple[str, int]]:
    """(callable name, line) for each call of a client builder in one file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in BUILDERS:
                found.append((name, node.lineno))
    return found


def test_no_module_but_the_wiring_root_builds_a_client() -> None:
    offenders = []
    for source in SOURCES:
        for path in sorted(source.rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            for name, line in builder_calls(path):
                if path != ROOT and BUILDERS[name] != rel:
                    offenders.append(f"{rel}:{line} calls {name}(")
    assert offenders == [], "build clients with joulie_tasks/adapters/clients.py"


def test_the_source_scan_finds_the_builders_it_looks_for() -> None:
    # The scan above must be able to fail: the root itself calls three builders.
    assert {name for name, _ in builder_calls(ROOT)} == {
        "RedisStore",
        "build_gateway",
        "CacheStore",
    }


class Built(Exception):
    """Raised by the patched root: the command reached it, with these settings."""

    def __init__(self, what: str, settings: config.Settings) -> None:
        super().__init__(what)
        self.what, self.settings = what, settings


#: One command line per built-in subcommand (``demo`` belongs to the test bed).
COMMANDS = {
    "worker": ["worker"],
    "beat": ["beat"],
    "metrics": ["metrics"],
    "watch": ["watch"],
    "reconcile": ["reconcile", "--once"],
    "status": ["status"],
    "history": ["history"],
    "plan": ["plan"],
    "pause": ["pause"],
    "resume": ["resume"],
}


def test_the_table_names_every_built_in_command() -> None:
    assert set(COMMANDS) == cli._builtin_commands()


@pytest.mark.parametrize("argv", COMMANDS.values(), ids=COMMANDS.keys())
def test_every_command_builds_its_clients_with_the_root(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def redis_store(settings: config.Settings) -> store.RedisStore:
        raise Built("redis", settings)

    def gateway(settings: config.Settings, *, pool_size: int | None = None) -> object:
        raise Built("kube", settings)

    monkeypatch.setattr(clients, "redis_store", redis_store)
    monkeypatch.setattr(clients, "gateway", gateway)
    settings = sentinel_settings()
    args: argparse.Namespace = cli.build_parser(plugins=False).parse_args(argv)
    args.celery_args = []
    # Given the Sentinel settings, when the command starts, then its first client comes
    # from the root, which receives the master's name
    with pytest.raises(Built) as built:
        args.handler(settings, args)
    assert built.value.settings.redis_sentinel_master == "joulie"
    assert built.value.what == ("kube" if argv[0] == "plan" else "redis")


def test_a_sentinel_url_is_wired_with_its_master_and_the_replica_check() -> None:
    state = clients.redis_store(sentinel_settings())
    try:
        assert state.master_name == "joulie"
        assert state.min_replicas == store.MIN_REPLICAS >= 1
        assert clients.cache(state).status  # the cache view shares that store
    finally:
        state.close()


def test_a_plain_url_is_wired_as_a_single_redis() -> None:
    state = clients.redis_store(config.read_settings({"REDIS_URL": "redis://127.0.0.1:1/3"}))
    try:
        assert state.master_name is None
        assert state.min_replicas == 0
        assert state.client.connection_pool.connection_kwargs["db"] == 3
    finally:
        state.close()


def test_a_store_refuses_a_sentinel_url_without_a_master_and_says_so() -> None:
    with pytest.raises(ValueError, match="needs the master's name"):
        store.RedisStore(SENTINEL_URL)


def test_the_gateway_gets_the_kube_settings_and_the_watcher_a_bigger_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[dict[str, object]] = []
    monkeypatch.setattr(kube, "build_gateway", lambda **kw: seen.append(kw))
    settings = config.read_settings(
        {
            "KUBECONFIG": "/k",
            "KUBE_CONTEXT": "c",
            "KUBE_REQUEST_TIMEOUT": "3s",
            "KUBE_POOL_SIZE": "2",
        }
    )
    clients.gateway(settings)
    clients.gateway(settings, pool_size=4)
    common = {"kubeconfig": "/k", "context": "c", "timeout": 3.0}
    assert seen == [{**common, "pool_size": 2}, {**common, "pool_size": 4}]


def test_celery_takes_its_broker_from_the_root() -> None:
    settings = sentinel_settings()
    url, options = clients.broker(settings)
    conf = celery_app.celery_config(settings)
    assert conf["broker_url"] == conf["result_backend"] == url
    assert url.count("sentinel://") == 3
    assert options == {"master_name": "joulie"}
    assert conf["broker_transport_options"]["master_name"] == "joulie"
    plain = config.read_settings({"REDIS_URL": "redis://r:6379/0"})
    assert clients.broker(plain) == ("redis://r:6379/0", {})
