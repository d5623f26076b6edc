"""Schedules (docs/SPEC.md §12.3): windows that override policy parameters or freeze
downgrades, each opening at cron times in a time zone and lasting a fixed duration.

Pure: the tick time is an argument, nothing reads a clock or a file (config.py reads
SCHEDULE_FILE and hands the parsed YAML to :func:`parse_schedule`). ``zoneinfo`` reads
the system's time-zone database, which is data, not state. Cron arithmetic is
``croniter``'s (five fields, the same syntax as a CronJob); a window opened at *s* is
active on the half-open interval [s, s + duration), so back-to-back windows never
overlap by an instant. Where windows overlap, later windows in the file win field by
field, and any active window with ``freeze_downgrades`` freezes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import ValidationError

from joulie_tasks.core import durations, models

_WINDOW_FIELDS = ("name", "cron", "duration", "timezone", "policy", "freeze_downgrades")


class ScheduleError(ValueError):
    """Raised when a schedule is invalid; the message names the window and the field."""


def parse_schedule(data: object) -> models.Schedule:
    """Validate a parsed SCHEDULE_FILE (``{"windows": [...]}``; empty or None: no window).

    Each window needs ``name``, ``cron`` (five fields) and ``duration`` (a Go duration,
    > 0); ``timezone`` (IANA name, default UTC), ``policy`` (overrides) and
    ``freeze_downgrades`` are optional. Raises ScheduleError naming the first bad
    window and field.
    """
    if data is None:
        return models.Schedule()
    if not isinstance(data, Mapping) or set(data) - {"windows"}:
        raise ScheduleError("expected a mapping with one key, 'windows' (a list of windows)")
    raw = data.get("windows") or []
    if not isinstance(raw, list):
        raise ScheduleError("field 'windows': expected a list of windows")
    windows: list[models.ScheduleWindow] = []
    for index, item in enumerate(raw):
        window = _parse_window(item, index=index)
        if any(w.name == window.name for w in windows):
            raise ScheduleError(f"window {window.name!r}, field 'name': used twice")
        windows.append(window)
    return models.Schedule(windows=tuple(windows))


def _parse_window(item: object, *, index: int) -> models.ScheduleWindow:
    label = f"window #{index + 1}"
    if not isinstance(item, Mapping):
        raise ScheduleError(f"{label}: expected a mapping (name, cron, duration, ...)")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ScheduleError(f"{label}, field 'name': expected a non-empty string")
    label = f"window {name!r}"
    if unknown := sorted(set(map(str, item)) - set(_WINDOW_FIELDS)):
        raise ScheduleError(
            f"{label}, field {unknown[0]!r}: unknown (expected one of {', '.join(_WINDOW_FIELDS)})"
        )
    cron = item.get("cron")
    if not isinstance(cron, str) or len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise ScheduleError(
            f"{label}, field 'cron': expected a five-field cron expression such as "
            f"'0 8 * * 1-5', got {cron!r}"
        )
    duration = _parse_duration(item.get("duration"), label=label)
    zone = item.get("timezone", "UTC")
    if not isinstance(zone, str) or not _is_zone(zone):
        raise ScheduleError(
            f"{label}, field 'timezone': expected an IANA time zone such as "
            f"'Europe/Rome', got {zone!r}"
        )
    try:
        return models.ScheduleWindow(
            name=name,
            cron=cron,
            duration_s=duration,
            timezone=zone,
            policy=item.get("policy") or {},
            freeze_downgrades=item.get("freeze_downgrades", False),
        )
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ScheduleError(f"{label}, field {where!r}: {first['msg']}") from None


def _parse_duration(value: object, *, label: str) -> float:
    problem = f"{label}, field 'duration': expected a Go duration > 0 such as 10h"
    if not isinstance(value, str):
        raise ScheduleError(f"{problem}, got {value!r}")
    try:
        seconds = durations.parse_duration(value)
    except ValueError:
        raise ScheduleError(f"{problem}, got {value!r}") from None
    if seconds <= 0:
        raise ScheduleError(f"{problem}, got {value!r}")
    return seconds


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def active_windows(schedule: models.Schedule, *, at: float) -> tuple[models.ScheduleWindow, ...]:
    """The windows active at Unix time ``at``, in file order."""
    return tuple(w for w in schedule.windows if _opened_at(w, at=at) is not None)


def _opened_at(window: models.ScheduleWindow, *, at: float) -> float | None:
    """When the window's current opening started, or None when it is closed at ``at``.

    The first cron time strictly after ``at - duration`` is the only opening that can
    cover ``at``; it does when it is not later than ``at``.
    """
    zone = ZoneInfo(window.timezone)
    start = datetime.fromtimestamp(at, tz=UTC).astimezone(zone) - timedelta(
        seconds=window.duration_s
    )
    opened = croniter(window.cron, start).get_next(float)
    return opened if opened <= at else None


def next_edge(schedule: models.Schedule, *, at: float) -> float | None:
    """The first time after ``at`` when a window may open or close (Unix time); None
    without windows. Until then the windows in force, and so the policy, stay as they
    are at ``at``: quiet ticks stop there (docs/SPEC.md §9.10). Early rather than late:
    where one window's openings overlap, the first closing counts although the window
    stays open."""
    edges: list[float] = []
    for window in schedule.windows:
        local = datetime.fromtimestamp(at, tz=UTC).astimezone(ZoneInfo(window.timezone))
        edges.append(croniter(window.cron, local).get_next(float))
        opened = _opened_at(window, at=at)
        if opened is not None:
            edges.append(opened + window.duration_s)
    return min(edges, default=None)


def policy_at(
    base: models.PolicyParams, *, active: Sequence[models.ScheduleWindow]
) -> models.PolicyParams:
    """``base`` with the overrides of the ``active`` windows applied, later ones last."""
    update: dict[str, object] = {}
    for window in active:
        update.update(window.policy.model_dump(exclude_none=True))
    return base.model_copy(update=update) if update else base


def freezing_window(active: Sequence[models.ScheduleWindow]) -> str | None:
    """The name of the first active window that freezes downgrades, if any."""
    return next((w.name for w in active if w.freeze_downgrades), None)
