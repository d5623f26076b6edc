"""The Celery configuration guarantees of the workflow, checked on the config itself."""

from __future__ import annotations

from joulie_tasks import config
from joulie_tasks.adapters import retrying
from joulie_tasks.queue import celery_app


def conf() -> dict[str, object]:
    return celery_app.celery_config(config.read_settings({"RECONCILE_INTERVAL": "30s"}))


def test_only_json_is_accepted_both_ways() -> None:
    c = conf()
    assert c["accept_content"] == ["json"]
    assert c["result_accept_content"] == ["json"]
    assert c["task_serializer"] == c["result_serializer"] == "json"


def test_tasks_are_acknowledged_late_and_redelivered_when_their_worker_dies() -> None:
    c = conf()
    assert c["task_acks_late"] is True
    assert c["task_reject_on_worker_lost"] is True
    assert c["worker_prefetch_multiplier"] == 1


def test_visibility_timeout_is_consistent_and_longer_than_any_task_or_retry_wait() -> None:
    c = conf()
    broker = c["broker_transport_options"]
    backend = c["result_backend_transport_options"]
    assert isinstance(broker, dict)
    assert broker == backend
    hard = c["task_time_limit"]
    assert isinstance(hard, int)
    assert c["task_soft_time_limit"] < hard < broker["visibility_timeout"]  # type: ignore[operator]
    assert broker["visibility_timeout"] > retrying.MAX_RETRY_AFTER_S


def test_beat_emits_one_expiring_tick_per_interval_with_its_scheduled_time() -> None:
    c = conf()
    schedule = c["beat_schedule"]
    assert isinstance(schedule, dict)
    (entry,) = schedule.values()
    assert entry["task"] == celery_app.TICK_TASK
    assert entry["schedule"] == 30
    assert entry["options"]["expires"] == 30
    assert "scheduled_at" in entry["kwargs"]
    assert c["beat_scheduler"] == "celery.beat:Scheduler"  # in memory: never replays a backlog
