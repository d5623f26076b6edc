"""Configuration: every variable with an invalid value stops the process at start-up
with one clear line (variable, value, what is expected) and exit code 2.

Parametrised over every field of ``config.Settings``; the coverage check fails when
a new variable is added without an invalid case here. Three variables have no
invalid value at start-up, by design: POLICY_TYPE (an unknown policy falls back to
static_partition with a warning, docs/SPEC.md §5), KUBECONFIG and KUBE_CONTEXT (any path or
name; a missing one is reported when connecting, with exit 1).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from joulie_tasks import config
from joulie_testbed.procs import free_port
from tests import REPO
from tests.chaos.reliability import Row

INVALID = {
    "RECONCILE_INTERVAL": "5 minutes",
    "NODE_SELECTOR": "joulie.io/managed in (true",
    "RESERVED_LABEL_KEY": "reserved node!",
    "POWER_PROFILE_LABEL": "joulie.io/",
    "DRAINING_LABEL": "-draining",
    "STATIC_HP_FRAC": "1.5",
    "QUEUE_HP_BASE_FRAC": "sixty percent",
    "QUEUE_HP_MIN": "1.5",
    "QUEUE_HP_MAX": "lots",
    "QUEUE_PERF_PER_HP_NODE": "ten",
    "PERFORMANCE_CAP_WATTS": "inf",
    "ECO_CAP_WATTS": "-120",
    "METRICS_ADDR": "8081",
    "REDIS_URL": "http://127.0.0.1:6379",
    # A master's name without a sentinel:// REDIS_URL (the test's URL is redis://).
    "REDIS_SENTINEL_MASTER": "joulie",
    "KUBE_REQUEST_TIMEOUT": "0s",
    "KUBE_POOL_SIZE": "0",
    "LOCK_TTL": "-5s",
    "LIST_PAGE_SIZE": "0",
    "WRITE_BATCH_SIZE": "many",
    "WRITE_CONCURRENCY": "1000",
    "MAX_TRANSITIONS_PER_TICK": "-1",
    "TRANSITION_STREAM_MAXLEN": "5",
    "WATCH_RELIST_INTERVAL": "ten minutes",
    "WATCH_LEASE_TTL": "-1s",
    "WATCH_TIMEOUT": "0s",
    "CACHE_MAX_AGE": "0",
    "KICK_WINDOW": "fast",
    "MIN_PROFILE_DWELL": "5",
    "MIN_PROFILE_DWELL_UPGRADES": "sometimes",
    "DOWNGRADE_BUDGET": "ten percent",
    "DOWNGRADE_BUDGET_WINDOW": "0s",
    "SCHEDULE_FILE": "/nonexistent/joulie-schedule.yaml",
    "OUTPUT_API": "nodetwins",
    "CPU_PERFORMANCE_CAP_PCT_OF_MAX": "0",
    "CPU_ECO_CAP_PCT_OF_MAX": "150",
    "GPU_PERFORMANCE_CAP_PCT_OF_MAX": "-1",
    "GPU_ECO_CAP_PCT_OF_MAX": "101",
    "CPU_WRITE_ABSOLUTE_CAPS": "sometimes",
    "GPU_WRITE_ABSOLUTE_CAPS": "2",
    "GPU_MODEL_CAPS_JSON": '{"NVIDIA-L40S": {"maxCapWatts": "350"}}',
    "GPU_PRODUCT_LABEL_KEYS": "nvidia.com/gpu product",
    "NODE_ORDER": "densest",
}
NO_INVALID_VALUE = {"POLICY_TYPE", "KUBECONFIG", "KUBE_CONTEXT"}


def test_every_variable_has_an_invalid_case() -> None:
    fields = {name.upper() for name in config.Settings.model_fields}
    assert set(INVALID) | NO_INVALID_VALUE == fields


@pytest.mark.parametrize(("name", "value"), sorted(INVALID.items()), ids=sorted(INVALID))
def test_an_invalid_variable_gives_one_line_and_exit_2(
    name: str, value: str, reliability: Row
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {n.upper() for n in INVALID}}
    env.update({"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", name: value})
    result = subprocess.run(
        [sys.executable, "-m", "joulie_tasks", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    lines = result.stderr.strip().splitlines()
    found = []
    if result.returncode != 2:
        found.append(f"exit {result.returncode}")
    if len(lines) != 1:
        found.append(f"{len(lines)} lines on stderr")
    elif not (name in lines[0] and repr(value) in lines[0] and "expected" in lines[0]):
        found.append(f"unclear line {lines[0]!r}")
    reliability.fault = "invalid configuration (each variable)"
    reliability.action = f"`{name}={value}`"
    reliability.behaviour = (
        "worker refused to start: one stderr line `joulie-tasks: invalid configuration: "
        "NAME='value': expected …`, exit code 2, nothing connected"
    )
    reliability.ticks, reliability.retries = "n/a (refused at start-up)", "0"
    reliability.lost = "none" if not found else "; ".join(found)
    reliability.extra["merge"] = "config"
    assert found == [], result.stderr
