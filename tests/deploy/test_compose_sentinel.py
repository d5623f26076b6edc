"""docker-compose.yml, profile "sentinel" (compose/sentinel.env): Redis master + two replicas
and three Sentinels, the same topology as deploy/sentinel; checked statically."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from joulie_tasks import config
from joulie_tasks.core import sentinel
from tests.deploy import helpers

SENTINEL_ENV = helpers.ROOT / "compose" / "sentinel.env"
REDIS_NODES = ("redis-master", "redis-replica-1", "redis-replica-2")
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")


def _services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = helpers.compose()["services"]
    return result


def test_the_profile_runs_a_master_two_replicas_and_three_sentinels() -> None:
    profiled = {n for n, s in _services().items() if "sentinel" in s.get("profiles", [])}
    assert profiled == set(REDIS_NODES + SENTINELS)
    for name in profiled:
        svc = _services()[name]
        assert svc["image"].startswith("redis:7"), name
        assert svc["hostname"] == name
        assert svc["entrypoint"][2] == name, "each one announces its own name"
        assert svc["entrypoint"][4] == "joulie"
        assert svc["entrypoint"][5:] == list(SENTINELS)
        assert "healthcheck" in svc, name


def test_the_env_file_points_the_operator_at_the_sentinels() -> None:
    env = helpers.read_env_file(SENTINEL_ENV)
    assert env["COMPOSE_PROFILES"] == "sentinel"
    settings = config.read_settings({**helpers.read_env_file(helpers.ENV_EXAMPLE), **env})
    assert settings.redis_sentinel_master == "joulie"
    hosts = sentinel.parse_sentinel_url(settings.redis_url).hosts
    assert hosts == tuple((name, 26379) for name in SENTINELS)


def test_without_the_env_file_the_operator_keeps_the_single_redis() -> None:
    env = helpers.compose()["x-operator"]["environment"]
    assert env["REDIS_URL"] == "${REDIS_URL:-redis://redis:6379/0}"
    assert env["REDIS_SENTINEL_MASTER"] == "${REDIS_SENTINEL_MASTER:-}"
    defaults = {"REDIS_URL": "redis://redis:6379/0", "REDIS_SENTINEL_MASTER": ""}
    assert not config.read_settings(defaults).uses_sentinel


@pytest.mark.parametrize("script", ["redis-node.sh", "sentinel.sh"])
def test_start_scripts_are_valid_shell(script: str) -> None:
    done = subprocess.run(
        ["sh", "-n", str(helpers.ROOT / "compose" / script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
