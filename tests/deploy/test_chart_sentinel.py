"""The Helm chart with an external Sentinel-managed Redis (externalRedis.sentinelMaster):
the master's name reaches the operator's settings and the worker's liveness ping goes
through the operator's own Celery configuration."""

from __future__ import annotations

from typing import Any

from joulie_tasks import config
from tests.deploy import chart, helpers

SENTINEL: dict[str, Any] = {
    "redis": {"enabled": False},
    "externalRedis": {"existingSecret": "joulie-redis", "sentinelMaster": "joulie"},
}


def test_the_master_name_reaches_the_configmap_and_parses_with_a_sentinel_url() -> None:
    objects = chart.render(SENTINEL)
    data = chart.one(objects, "ConfigMap", "joulie-tasks")["data"]
    assert data["REDIS_SENTINEL_MASTER"] == "joulie"
    url = "sentinel://:pw@s1:26379;sentinel://s2:26379;sentinel://s3:26379/0"  # the Secret's
    assert config.read_settings({**data, "REDIS_URL": url}).uses_sentinel


def test_the_worker_liveness_ping_knows_the_master_name() -> None:
    objects = chart.render(SENTINEL)
    worker = chart.one(objects, "Deployment", "joulie-tasks-worker")
    command = worker["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["exec"][
        "command"
    ]
    assert command[:2] == ["python", "-c"]
    assert "celery_app.configure(config.load_settings())" in command[2]
    helpers.probe_imports_run(command[2])  # the modules it names exist


def test_without_sentinel_nothing_changes() -> None:
    objects = chart.render(
        {
            "redis": {"enabled": False},
            "externalRedis": SENTINEL["externalRedis"] | {"sentinelMaster": ""},
        }
    )
    assert "REDIS_SENTINEL_MASTER" not in chart.one(objects, "ConfigMap", "joulie-tasks")["data"]
    worker = chart.one(objects, "Deployment", "joulie-tasks-worker")
    command = worker["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["exec"][
        "command"
    ]
    assert command[0] == "sh"


def test_helm_lint_is_clean_with_sentinel() -> None:
    report = chart.lint(SENTINEL)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
