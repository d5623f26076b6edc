"""SCHEDULE_FILE in the deployables (docs/SPEC.md §12.3): the kustomize component
deploy/schedule and the chart's ``schedule.windows`` value mount one ConfigMap in every
operator pod, point SCHEDULE_FILE at it, and the schedule they carry is valid."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from joulie_tasks import config
from joulie_tasks.core import schedule
from tests.deploy import chart, helpers

OPERATOR_DEPLOYMENTS = ("worker", "beat", "watcher", "metrics")
WINDOWS = [
    {
        "name": "office-hours",
        "cron": "0 8 * * 1-5",
        "duration": "10h",
        "timezone": "Europe/Rome",
        "freeze_downgrades": True,
    },
    {"name": "night", "cron": "0 22 * * *", "duration": "8h", "policy": {"static_hp_frac": 0.2}},
]


def _mounted_schedule(objects: list[dict[str, Any]], configmap: str, tmp_path: Path) -> None:
    """Every operator pod mounts ``configmap`` where SCHEDULE_FILE points, and it parses."""
    settings = next(
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "joulie-tasks"
    )["data"]
    path = Path(settings["SCHEDULE_FILE"])
    for component in OPERATOR_DEPLOYMENTS:
        deployment = next(
            o
            for o in objects
            if o["kind"] == "Deployment" and o["metadata"]["name"] == f"joulie-tasks-{component}"
        )
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
        assert volumes["schedule"]["configMap"]["name"] == configmap, component
        assert Path(mounts["schedule"]["mountPath"]) == path.parent, component
        assert mounts["schedule"]["readOnly"] is True
    content = next(
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == configmap
    )["data"][path.name]
    local = tmp_path / path.name
    local.write_text(content)
    parsed = config.read_settings({**settings, "SCHEDULE_FILE": str(local)}).schedule
    assert [w.name for w in parsed.windows] == ["office-hours", "night"]
    office = parsed.windows[0]
    assert (office.cron, office.duration_s, office.timezone) == (
        "0 8 * * 1-5",
        36_000,
        "Europe/Rome",
    )
    assert office.freeze_downgrades
    # A Wednesday at 12:00 in Rome is frozen, at 19:00 it is not
    assert schedule.freezing_window(schedule.active_windows(parsed, at=1_765_364_400.0)) == (
        "office-hours"
    )
    assert schedule.freezing_window(schedule.active_windows(parsed, at=1_765_389_600.0)) is None


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_the_schedule_component_mounts_a_valid_schedule_in_every_operator_pod(
    tmp_path: Path,
) -> None:
    rel = Path(*[".."] * len(tmp_path.parts[1:])) / helpers.DEPLOY.relative_to("/")
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {rel}\ncomponents:\n  - {rel / 'schedule'}\n"
    )
    objects = helpers.kustomize(tmp_path)
    _mounted_schedule(objects, "joulie-tasks-schedule", tmp_path)


def test_the_base_has_no_schedule() -> None:
    assert helpers.one("ConfigMap", "joulie-tasks")["data"]["SCHEDULE_FILE"] == ""
    assert (
        config.read_settings(helpers.one("ConfigMap", "joulie-tasks")["data"]).schedule.windows
        == ()
    )


def test_the_chart_mounts_schedule_windows_in_every_operator_pod(tmp_path: Path) -> None:
    objects = chart.render({"schedule": {"windows": WINDOWS}})
    _mounted_schedule(objects, "joulie-tasks-schedule", tmp_path)
    worker = chart.one(objects, "Deployment", "joulie-tasks-worker")
    assert "checksum/schedule" in worker["spec"]["template"]["metadata"]["annotations"]


def test_the_chart_renders_no_schedule_by_default() -> None:
    objects = chart.render()
    assert chart.find(objects, "ConfigMap", "joulie-tasks-schedule") == []
    assert chart.one(objects, "ConfigMap", "joulie-tasks")["data"]["SCHEDULE_FILE"] == ""


def test_the_chart_schema_rejects_a_window_without_cron() -> None:
    with pytest.raises(Exception, match="cron"):
        chart.render({"schedule": {"windows": [{"name": "x", "duration": "1h"}]}})
