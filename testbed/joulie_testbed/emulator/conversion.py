"""events.k8s.io/v1 Events are core Events stored once and converted on the way in and out.

The real server keeps one storage for both APIs: an event created through either is
listed, read, patched and deleted through both. The emulator stores the core/v1 form
and renames fields for the events.k8s.io view (the conversion of
k8s.io/kubernetes/pkg/apis/events/v1).
"""

from __future__ import annotations

from typing import Any

#: events.k8s.io/v1 field -> core/v1 field (every other field keeps its name).
_TO_CORE = {
    "regarding": "involvedObject",
    "note": "message",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
    "reportingController": "reportingComponent",
}
_TO_V1 = {core: v1 for v1, core in _TO_CORE.items()}


def _rename(obj: dict[str, Any], names: dict[str, str], api_version: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "apiVersion":
            out[key] = api_version
        else:
            out[names.get(key, key)] = value
    return out


def event_to_core(obj: dict[str, Any]) -> dict[str, Any]:
    """An events.k8s.io/v1 Event as the core/v1 Event the store keeps."""
    core = _rename(obj, _TO_CORE, "v1")
    core.setdefault("involvedObject", {})  # a struct, never omitted by the real server
    return core


def event_to_v1(obj: dict[str, Any]) -> dict[str, Any]:
    """A stored core/v1 Event as events.k8s.io/v1 shows it (a bare list item stays bare)."""
    return _rename(obj, _TO_V1, "events.k8s.io/v1")
