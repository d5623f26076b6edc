"""Go-style durations (``30s``, ``1m30s``, ``500ms``, ``1.5h``) for RECONCILE_INTERVAL
(docs/SPEC.md §3).

Pure: no clock, no environment. The grammar is Go's ``time.ParseDuration``: an optional
sign, then one or more ``<decimal><unit>`` pairs with units ``ns us µs ms s m h``; the
bare string ``0`` is the only value allowed without a unit. Arithmetic is exact
(fractions of nanoseconds) until the final conversion to float seconds, so ``1.1h`` is
3960.0 and not 3960.0000000000005. Unlike Go we do not cap at ~292 years: range checks
belong to the caller (config.py), which also rejects negative intervals.
"""

from __future__ import annotations

import re
from datetime import datetime
from fractions import Fraction

EXPECTED = "expected a Go duration such as 30s, 1m30s, 500ms"

_NS_PER_UNIT: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu, which Go accepts as well
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_NS_PER_SECOND = 1_000_000_000
# One "<number><unit>" pair; the number needs a digit on at least one side of the dot.
_PAIR = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Return the duration ``text`` in seconds (negative when it starts with ``-``).

    Raises ValueError whose message is :data:`EXPECTED` (the caller adds the variable
    name and value) for anything Go rejects: an empty string, a number without a
    unit, an unknown unit, stray spaces, non-ASCII digits.
    """
    body = text
    negative = False
    if body[:1] in ("+", "-"):
        negative = body[0] == "-"
        body = body[1:]
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(EXPECTED)
    total = Fraction(0)
    pos = 0
    while pos < len(body):
        match = _PAIR.match(body, pos)
        if match is None:
            raise ValueError(EXPECTED)
        total += Fraction(match.group(1)) * _NS_PER_UNIT[match.group(2)]
        pos = match.end()
    seconds = float(total / _NS_PER_SECOND)
    return -seconds if negative else seconds


def format_duration(seconds: float) -> str:
    """Render ``seconds`` compactly in Go syntax, omitting zero parts: 90 → ``1m30s``.

    Sub-second values use the largest fitting unit (``500ms``, ``1.5µs``); zero is
    ``0s``. The result parses back with :func:`parse_duration` to the same value
    at nanosecond precision. ``seconds`` must be finite.
    """
    ns = round(Fraction(seconds) * _NS_PER_SECOND)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < _NS_PER_SECOND:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return f"{sign}{_decimal(ns, size)}{unit}"
    hours, rest = divmod(ns, _NS_PER_UNIT["h"])
    minutes, rest = divmod(rest, _NS_PER_UNIT["m"])
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    if rest:
        parts.append(f"{_decimal(rest, _NS_PER_SECOND)}s")
    return sign + "".join(parts)


def _decimal(value: int, unit: int) -> str:
    """``value / unit`` as an exact decimal without trailing zeros (unit is a power of 10)."""
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def parse_time_point(text: str) -> float:
    """A moment as Unix seconds (``1700000000``) or ISO 8601 with a zone (``…T00:00:00Z``).

    Raises ValueError saying what is expected; a zone-less ISO time is refused, since
    it would silently depend on the machine's local time.
    """
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r}: expected Unix seconds or an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r}: an ISO 8601 time needs a time zone (e.g. Z)")
    return moment.timestamp()
