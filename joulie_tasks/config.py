"""Settings: every docs/SPEC.md §3 variable, plus the connection and workflow knobs.

This is the only module that reads the environment. ``load_settings()`` runs once
per process at start-up; any invalid value stops the process with one line per
bad variable (``NAME='value': expected …``) and exit code 2, never a traceback.
An unknown ``POLICY_TYPE`` is the one tolerated mistake (docs/SPEC.md §5): it falls back
to ``static_partition`` and the fallback is visible in logs and in a metric.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import sys
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from joulie_tasks import errors
from joulie_tasks.core import caps, durations, hardware, models, schedule, selectors, sentinel

logger = logging.getLogger(__name__)

EXIT_CONFIG = 2

_DURATION_FIELDS = (
    "reconcile_interval",
    "lock_ttl",
    "kube_request_timeout",
    "watch_relist_interval",
    "watch_lease_ttl",
    "watch_timeout",
    "cache_max_age",
    "kick_window",
    "min_profile_dwell",
    "downgrade_budget_window",
)

#: The policy parameters' defaults, written once in the model the core reads.
_POLICY = models.PolicyParams()


class Settings(BaseSettings):
    """One field per environment variable; the env name is the field name upper-cased."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    # --- docs/SPEC.md §3 -----------------------------------------------------------------------
    reconcile_interval: float = Field(60.0, gt=0)
    """Tick period in seconds; env takes a Go duration (``30s``, ``1m30s``). Default 1m."""
    node_selector: str = "joulie.io/managed=true"
    """Kubernetes label selector choosing the managed nodes."""
    reserved_label_key: str = Field("joulie.io/reserved", min_length=1)
    """A node whose label of this key is ``"true"`` is never managed."""
    power_profile_label: str = Field("joulie.io/power-profile", min_length=1)
    """Node label the decided profile is written to."""
    draining_label: str = Field("joulie.io/draining", min_length=1)
    """Node label set to ``true`` while a downgrade waits for performance pods."""
    policy_type: str = "static_partition"
    """``static_partition``, ``queue_aware_v1`` or ``rule_swap_v1`` (case-insensitive)."""
    static_hp_frac: float = Field(_POLICY.static_hp_frac, ge=0, le=1)
    """static_partition: fraction of nodes in performance."""
    queue_hp_base_frac: float = Field(_POLICY.queue_hp_base_frac, ge=0, le=1)
    """queue_aware_v1: baseline fraction of performance nodes."""
    queue_hp_min: int = _POLICY.queue_hp_min
    """queue_aware_v1: lower bound on performance nodes (negative means 0)."""
    queue_hp_max: int = _POLICY.queue_hp_max
    """queue_aware_v1: upper bound (≤ 0 means the number of nodes)."""
    queue_perf_per_hp_node: int = _POLICY.queue_perf_per_hp_node
    """queue_aware_v1: performance pods one performance node absorbs (≤ 0 means 1)."""
    performance_cap_watts: float = Field(_POLICY.performance_cap_watts, ge=1, allow_inf_nan=False)
    """CPU package power cap written for performance nodes, in watts."""
    eco_cap_watts: float = Field(_POLICY.eco_cap_watts, ge=1, allow_inf_nan=False)
    """CPU package power cap written for eco nodes, in watts."""
    metrics_addr: str = ":8081"
    """``[host]:port`` the Prometheus endpoint listens on."""
    cpu_performance_cap_pct_of_max: float = Field(100.0, gt=0, le=100, allow_inf_nan=False)
    """NodeTwin CPU cap of performance nodes, in percent of the package's max (0 < x ≤ 100)."""
    cpu_eco_cap_pct_of_max: float = Field(60.0, gt=0, le=100, allow_inf_nan=False)
    """NodeTwin CPU cap of eco (and draining) nodes, in percent of max (0 < x ≤ 100)."""
    gpu_performance_cap_pct_of_max: float = Field(100.0, ge=0, le=100, allow_inf_nan=False)
    """NodeTwin GPU cap of performance nodes with allocatable GPUs, in percent of each
    GPU's max (0 ≤ x ≤ 100; 0: no GPU intent, the agent leaves the GPUs alone)."""
    gpu_eco_cap_pct_of_max: float = Field(60.0, ge=0, le=100, allow_inf_nan=False)
    """NodeTwin GPU cap of eco and draining nodes, in percent of max (0 ≤ x ≤ 100)."""
    cpu_write_absolute_caps: bool = False
    """NodeTwin CPU cap of nodes without GPUs in watts (PERFORMANCE/ECO_CAP_WATTS within
    the package's range) instead of percent of max (docs/SPEC.md §13.11)."""
    gpu_write_absolute_caps: bool = False
    """Also write ``capWattsPerGpu`` where a GPU's power range is known (§13.11)."""
    gpu_model_caps_json: str = "{}"
    """JSON object: GPU product → ``{"minCapWatts": W, "maxCapWatts": W}``; the last
    source of absolute GPU caps. Empty means ``{}``."""
    gpu_product_label_keys: str = ",".join(hardware.DEFAULT_GPU_PRODUCT_LABEL_KEYS)
    """Comma-separated node label keys naming a node's GPU product, first set one wins.
    Empty means the default."""
    node_order: models.NodeOrder = models.NodeOrder.NAME
    """``name`` (default, the byte order of node names) or ``density`` (densest
    hardware first, at least one performance node per hardware family; §13.10)."""
    output_api: models.OutputApi = models.OutputApi.NODEPOWERPROFILE
    """Objects the decision is published as: ``nodepowerprofile`` (default, unchanged),
    ``nodetwin`` (the newest generation's NodeTwin) or ``both`` (migration); any case."""

    # --- connections ---------------------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Broker, result backend, FSM and locks (``redis://`` or ``rediss://``), or the
    Sentinels of a Sentinel-managed Redis (``sentinel://h1:26379;sentinel://h2:26379``)."""
    redis_sentinel_master: str | None = None
    """Name of the master the Sentinels watch; required with (and only with) a
    ``sentinel://`` REDIS_URL."""
    kubeconfig: str | None = None
    """Path of a kubeconfig; unset means in-cluster service account, else ~/.kube/config."""
    kube_context: str | None = None
    """Context to use from the kubeconfig (default: its current context)."""
    kube_request_timeout: float = Field(10.0, gt=0)
    """Per-request timeout for the Kubernetes API; env takes a Go duration."""
    kube_pool_size: int = Field(8, ge=1, le=256)
    """HTTP connection-pool size of each worker's Kubernetes client."""

    # --- workflow ------------------------------------------------------------------------
    lock_ttl: float = Field(30.0, gt=0)
    """Leader-lock time-to-live; renewed while a tick runs, so only a dead holder lets it
    expire. Env takes a Go duration."""
    list_page_size: int = Field(500, ge=1, le=10_000)
    """``limit`` of every paginated list call."""
    write_batch_size: int = Field(100, ge=1, le=10_000)
    """Nodes per write batch task; batches fan out across workers."""
    write_concurrency: int = Field(8, ge=1, le=64)
    """Parallel API writes inside one batch task (threads)."""
    max_transitions_per_tick: int = Field(0, ge=0)
    """At most this many nodes change profile per tick, the rest in later ticks, in plan
    order. 0 means unlimited (the reference behaviour)."""
    transition_stream_maxlen: int = Field(10_000, ge=10)
    """Approximate bound on the Redis transition stream."""

    # --- damping and schedules (docs/SPEC.md §12) ----------------------------------------
    min_profile_dwell: float = Field(0.0, ge=0)
    """A node that changed profile less than this long ago is not downgraded (Go duration;
    0, the default, disables the dwell)."""
    min_profile_dwell_upgrades: bool = False
    """Let MIN_PROFILE_DWELL delay upgrades to performance too (default: demand first)."""
    downgrade_budget: str = ""
    """At most this many downgrades per DOWNGRADE_BUDGET_WINDOW: a count (``10``) or a
    percentage of the eligible nodes (``10%``, rounded up); empty (default) means none."""
    downgrade_budget_window: float = Field(600.0, gt=0)
    """The sliding window of DOWNGRADE_BUDGET (Go duration; default 10m)."""
    schedule_file: str | None = None
    """YAML file of schedule windows (cron, duration, time zone, overrides, freeze)."""

    _schedule: models.Schedule = PrivateAttr(default_factory=models.Schedule)

    # --- watcher and cache (watcher.py) ---------------------------------------------------
    watch_relist_interval: float = Field(600.0, gt=0)
    """Full relist of every watched resource this often, to heal missed events (10m)."""
    watch_lease_ttl: float = Field(15.0, gt=0)
    """Watcher lease TTL: a standby takes over within this long after the active one dies."""
    watch_timeout: float = Field(300.0, ge=1)
    """Server-side ``timeoutSeconds`` of one watch request; the watcher then resumes."""
    cache_max_age: float = Field(5.0, gt=0)
    """A tick reads the cache only when its heartbeat is younger than this, else lists: a
    dead or frozen watcher's cache is never used longer than this after its last beat."""
    kick_window: float = Field(1.0, gt=0)
    """Debounce window of event-driven ticks: at most one kick per window."""

    @field_validator(*_DURATION_FIELDS, mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            return durations.parse_duration(value)
        return value

    @field_validator("downgrade_budget")
    @classmethod
    def _check_budget(cls, value: str) -> str:
        budget_parts(value)
        return value

    @field_validator("schedule_file", mode="before")
    @classmethod
    def _check_schedule(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip() == "":
            return None  # compose passes an unset variable as ""
        if isinstance(value, str):
            read_schedule(value)
        return value

    def model_post_init(self, context: Any, /) -> None:
        if self.schedule_file is not None:
            self._schedule = read_schedule(self.schedule_file)

    @field_validator("node_selector")
    @classmethod
    def _check_selector(cls, value: str) -> str:
        try:
            selectors.parse_selector(value)
        except selectors.SelectorError as e:
            raise ValueError(f"expected a Kubernetes label selector ({e})") from None
        return value

    @field_validator("reserved_label_key", "power_profile_label", "draining_label")
    @classmethod
    def _check_label_key(cls, value: str) -> str:
        # An invalid key would otherwise be refused by the API server on every tick.
        problem = selectors.label_key_problem(value) if value else None
        if problem is not None:
            reason = problem.split(": ", 1)[-1]  # the value itself is already on the line
            raise ValueError(f"expected a Kubernetes label key ([prefix/]name); {reason}")
        return value

    @field_validator("output_api", "node_order", mode="before")
    @classmethod
    def _check_word(cls, value: Any, info: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip().lower()
        enum = models.OutputApi if info.field_name == "output_api" else models.NodeOrder
        allowed = [m.value for m in enum]
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return text

    @field_validator("cpu_write_absolute_caps", "gpu_write_absolute_caps", mode="before")
    @classmethod
    def _trim_bool(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value  # ' true ' as the reference

    @field_validator("gpu_model_caps_json")
    @classmethod
    def _check_gpu_model_caps(cls, value: str) -> str:
        gpu_model_caps(value)
        return value

    @field_validator("gpu_product_label_keys")
    @classmethod
    def _check_product_keys(cls, value: str) -> str:
        product_label_keys(value)
        return value

    @field_validator("metrics_addr")
    @classmethod
    def _check_metrics_addr(cls, value: str) -> str:
        host_port(value)
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if sentinel.is_sentinel_url(value):
            sentinel.parse_sentinel_url(value)  # ValueError: one line naming the problem
            return value
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected a redis://, rediss://, unix:// or sentinel:// URL")
        return value

    @field_validator("redis_sentinel_master", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # compose passes an unset variable as "": that means no Sentinel, not a name.
        return None if isinstance(value, str) and value == "" else value

    @property
    def uses_sentinel(self) -> bool:
        return sentinel.is_sentinel_url(self.redis_url)

    # --- derived views -------------------------------------------------------------------

    @property
    def policy(self) -> models.PolicyName:
        """The policy in force; unknown names fall back to static_partition."""
        try:
            return models.PolicyName(self.policy_type.strip().lower())
        except ValueError:
            return models.PolicyName.STATIC_PARTITION

    @property
    def policy_fell_back(self) -> bool:
        return self.policy.value != self.policy_type.strip().lower()

    @property
    def selector(self) -> selectors.LabelSelector:
        return selectors.parse_selector(self.node_selector)

    @property
    def schedule(self) -> models.Schedule:
        """SCHEDULE_FILE as read at start-up (no window when unset)."""
        return self._schedule

    @property
    def damps(self) -> bool:
        """True when a dwell, a budget or a schedule window is configured (docs/SPEC.md
        §12): decisions then depend on time and on the FSM's history."""
        params = self.damping_params()
        return params.min_dwell_s > 0 or params.has_budget or bool(self.schedule.windows)

    @property
    def digest(self) -> str:
        """A fingerprint of every setting and the schedule read at start-up: a quiet
        tick reuses only what a tick with the same one decided (docs/SPEC.md §9.10)."""
        text = self.model_dump_json() + self._schedule.model_dump_json()
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def reads_hardware(self) -> bool:
        """NodeHardware is read when a twin is written or the density order is on."""
        return self.output_api.writes_twins or self.node_order is models.NodeOrder.DENSITY

    @property
    def product_label_keys(self) -> tuple[str, ...]:
        return product_label_keys(self.gpu_product_label_keys)

    def twin_caps(self) -> caps.Caps:
        """The cap settings of the NodeTwin writer (core/caps.py)."""
        return caps.Caps(
            cpu={
                models.Profile.PERFORMANCE: self.cpu_performance_cap_pct_of_max,
                models.Profile.ECO: self.cpu_eco_cap_pct_of_max,
            },
            gpu={
                models.Profile.PERFORMANCE: self.gpu_performance_cap_pct_of_max,
                models.Profile.ECO: self.gpu_eco_cap_pct_of_max,
            },
            cpu_absolute=self.cpu_write_absolute_caps,
            gpu_absolute=self.gpu_write_absolute_caps,
            gpu_model_caps=gpu_model_caps(self.gpu_model_caps_json),
            product_label_keys=self.product_label_keys,
        )

    def damping_params(self) -> models.DampingParams:
        count, percent = budget_parts(self.downgrade_budget)
        return models.DampingParams(
            min_dwell_s=self.min_profile_dwell,
            dwell_upgrades=self.min_profile_dwell_upgrades,
            budget_count=count,
            budget_percent=percent,
            budget_window_s=self.downgrade_budget_window,
        )

    def policy_params(self) -> models.PolicyParams:
        return models.PolicyParams(
            policy=self.policy,
            interval_seconds=self.reconcile_interval,
            static_hp_frac=self.static_hp_frac,
            queue_hp_base_frac=self.queue_hp_base_frac,
            queue_hp_min=self.queue_hp_min,
            queue_hp_max=self.queue_hp_max,
            queue_perf_per_hp_node=self.queue_perf_per_hp_node,
            performance_cap_watts=self.performance_cap_watts,
            eco_cap_watts=self.eco_cap_watts,
        )


def budget_parts(text: str) -> tuple[int | None, float | None]:
    """DOWNGRADE_BUDGET as (count, percent); ("", "") → no budget. Raises ValueError."""
    value = text.strip()
    if not value:
        return None, None
    problem = "expected a count (10) or a percentage of the eligible nodes (10%)"
    try:
        if value.endswith("%"):
            percent = float(value[:-1])
            if not 0 <= percent <= 100:
                raise ValueError(problem)
            return None, percent
        count = int(value)
    except ValueError:
        raise ValueError(problem) from None
    if count < 0:
        raise ValueError(problem)
    return count, None


_GPU_CAP_FIELDS = {"minCapWatts", "maxCapWatts"}


def gpu_model_caps(text: str) -> dict[str, caps.GpuModelCap]:
    """GPU_MODEL_CAPS_JSON parsed (empty = ``{}``); ValueError names what is wrong. The
    reference silently uses an empty map for bad JSON; a typo here would silently
    drop every absolute GPU cap, so we refuse it."""
    if not text.strip():
        return {}
    shape = 'a JSON object such as {"NVIDIA-L40S": {"minCapWatts": 200, "maxCapWatts": 350}}'
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError(f"expected {shape} (not valid JSON)") from None
    if not isinstance(data, dict):
        raise ValueError(f"expected {shape}")
    found: dict[str, caps.GpuModelCap] = {}
    for product, entry in data.items():
        if not isinstance(entry, dict) or set(entry) - _GPU_CAP_FIELDS:
            raise ValueError(f"expected {shape}; {product!r} has other fields")
        high, low = _finite(entry.get("maxCapWatts")), _finite(entry.get("minCapWatts", 0))
        if high is None or low is None or not 0 <= low <= high or high <= 0:
            raise ValueError(f"expected {shape}; {product!r} needs 0 ≤ minCapWatts ≤ maxCapWatts")
        found[product] = caps.GpuModelCap(max_cap_watts=high, min_cap_watts=low)
    return found


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def product_label_keys(text: str) -> tuple[str, ...]:
    """GPU_PRODUCT_LABEL_KEYS as a tuple (empty = the default); ValueError on a bad key."""
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    if not text.strip():
        return hardware.DEFAULT_GPU_PRODUCT_LABEL_KEYS
    if not keys:
        raise ValueError("expected comma-separated label keys")
    for key in keys:
        if problem := selectors.label_key_problem(key):
            reason = problem.split(": ", 1)[-1]
            raise ValueError(f"expected comma-separated label keys; {key!r}: {reason}")
    return keys


def read_schedule(path: str) -> models.Schedule:
    """Read and validate SCHEDULE_FILE; ValueError names the window and the field."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ValueError(f"expected a readable YAML file ({e.strerror})") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ValueError(f"expected a YAML file (not parsable{line})") from None
    try:
        return schedule.parse_schedule(data)
    except schedule.ScheduleError as e:
        raise ValueError(f"expected a valid schedule; {e}") from None


def host_port(addr: str) -> tuple[str, int]:
    """Split ``[host]:port`` (``:8081``, ``0.0.0.0:9000``, ``[::1]:80``) or raise ValueError."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected [host]:port with a port from 0 to 65535, e.g. :8081")
    return host.strip("[]") or "0.0.0.0", int(port)


_EXPECTED = {
    "float_parsing": "a number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "greater_than_equal": "a number ≥ {ge}",
    "less_than_equal": "a number ≤ {le}",
    "greater_than": "a number > {gt}",
    "string_too_short": "a non-empty string",
    "finite_number": "a finite number",
    "bool_parsing": "a boolean (true/false, yes/no, on/off, 1/0)",
}


def _error_line(error: Mapping[str, Any], env: Mapping[str, str]) -> str:
    name = str(error["loc"][0]).upper() if error["loc"] else "SETTINGS"
    value = env.get(name, error.get("input"))
    if name == "REDIS_URL" and isinstance(value, str):
        value = sentinel.redact(value)  # a password never reaches a log line
    ctx = error.get("ctx") or {}
    template = _EXPECTED.get(str(error["type"]))
    if name in ("STATIC_HP_FRAC", "QUEUE_HP_BASE_FRAC") and error["type"] != "float_parsing":
        expected = "a fraction between 0 and 1"
    elif template is not None:
        expected = template.format(**ctx)
    else:
        expected = str(ctx.get("error") or error["msg"]).removeprefix("Value error, ")
        expected = expected.removeprefix("expected ")
    return f"{name}={value!r}: expected {expected}"


def read_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from ``env`` (default: the process environment) or raise ConfigError."""
    source = {k.upper(): v for k, v in (os.environ if env is None else env).items()}
    known = {name.upper() for name in Settings.model_fields}
    values = {k.lower(): v for k, v in source.items() if k in known}
    try:
        settings = Settings.model_validate(values)
    except ValidationError as e:
        lines = [_error_line(err, source) for err in e.errors()]
        raise errors.ConfigError(sorted(set(lines))) from None
    if problem := _sentinel_problem(settings):
        raise errors.ConfigError([problem])
    return settings


def _sentinel_problem(settings: Settings) -> str | None:
    """REDIS_SENTINEL_MASTER goes with a sentinel:// REDIS_URL, and only with one."""
    master = settings.redis_sentinel_master
    if settings.uses_sentinel and not (master and master.strip()):
        return (
            f"REDIS_SENTINEL_MASTER={master!r}: expected the name of the master the Sentinels "
            "watch (REDIS_URL is sentinel://)"
        )
    if master is not None and not settings.uses_sentinel:
        return (
            f"REDIS_SENTINEL_MASTER={master!r}: expected it unset unless REDIS_URL is sentinel://"
        )
    return None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings once at start-up; on error print one line per variable and exit 2."""
    try:
        settings = read_settings(env)
    except errors.ConfigError as e:
        for line in e.lines:
            print(f"joulie-tasks: invalid configuration: {line}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    if settings.policy_fell_back:
        logger.warning(
            "POLICY_TYPE=%r is unknown; falling back to static_partition", settings.policy_type
        )
    return settings


@functools.cache
def cached_settings() -> Settings:
    """Per-process settings for task code (tasks never take settings from a message)."""
    return load_settings()
