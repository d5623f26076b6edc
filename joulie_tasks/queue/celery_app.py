"""The Celery application: broker, serialisation, delivery guarantees, beat schedule.

The app object exists at import (tasks register on it); ``configure`` applies the
settings once in each entry point, before workers fork. Choices and why:

- JSON only, both ways: a pickled message is refused by kombu, never executed.
- ``acks_late`` + ``reject_on_worker_lost`` + prefetch 1: a task whose worker
  dies is redelivered, and no worker hoards messages it may die with.
- Every task has time limits, and the Redis visibility timeout (broker and
  result backend alike) is longer than any of them, so a slow task is never
  redelivered while it still runs; no retry delay comes near it (retrying.py).
- With a ``sentinel://`` REDIS_URL the broker and the result backend ask the
  Sentinels for the current master (transport option ``master_name``) and
  reconnect to the new one after a failover; the URL and that option come from
  the wiring root (adapters/clients.py), like every other client's.
- Beat uses the in-memory scheduler: a restarted beat fires once, it never
  replays the ticks it missed. Ticks expire after one interval, and the tick
  task itself drops duplicates per interval (SET NX), whatever beat does.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Celery
from celery.beat import BeatLazyFunc

from joulie_tasks import config
from joulie_tasks.adapters import clients

TICK_TASK = "joulie.tick"
STAGE_SOFT_LIMIT_S = 240
STAGE_HARD_LIMIT_S = 300
#: Longer than any task's hard limit (see module docstring).
VISIBILITY_TIMEOUT_S = 900

app = Celery("joulie_tasks", include=["joulie_tasks.queue.tasks"])


def celery_config(settings: config.Settings) -> dict[str, Any]:
    """The whole Celery configuration for these settings (a plain dict, testable)."""
    url, transport = clients.broker(settings)
    transport |= {"visibility_timeout": VISIBILITY_TIMEOUT_S, "socket_timeout": 10}
    interval = settings.reconcile_interval
    return {
        "broker_url": url,
        "result_backend": url,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": STAGE_SOFT_LIMIT_S,
        "task_time_limit": STAGE_HARD_LIMIT_S,
        "task_ignore_result": True,
        "result_expires": 3600,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "timezone": "UTC",
        "beat_scheduler": "celery.beat:Scheduler",
        "beat_max_loop_interval": max(1.0, min(interval / 4, 5.0)),
        "beat_schedule": {
            "joulie-reconcile": {
                "task": TICK_TASK,
                "schedule": interval,
                "kwargs": {"scheduled_at": BeatLazyFunc(time.time)},
                "options": {"expires": interval},
            }
        },
    }


def configure(settings: config.Settings) -> Celery:
    """Apply the settings to the app (call once per process, before forking)."""
    app.conf.update(celery_config(settings))
    return app
