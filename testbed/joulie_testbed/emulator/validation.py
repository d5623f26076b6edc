"""Admission checks: object names and labels for every kind, CRD schemas for custom ones.

Custom resources are validated against the ``openAPIV3Schema`` of their installed
CRD (so the shipped manifest *is* what the emulator enforces), after pruning unknown
fields like a structural schema does. The schema subset understood is what our CRD
uses: type, properties, required, enum, minLength/maxLength, minimum/maximum,
items, pattern and x-kubernetes-preserve-unknown-fields. Messages copy the wording of
the real server so operators' error handling sees familiar text.
"""

from __future__ import annotations

import json
import re
from typing import Any

from joulie_testbed.emulator import conversion, errors, resources, selection

_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NAME_HELP = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
    "regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_TYPE_NAMES = {str: "string", bool: "boolean", int: "integer", float: "number"}
Cause = dict[str, str]


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, dict | list) else _type_name(value)


def is_dns_subdomain(name: str) -> bool:
    return len(name) <= 253 and _DNS_SUBDOMAIN.fullmatch(name) is not None


def check_string_maps(obj: dict[str, Any]) -> None:
    """400 when labels/annotations are not string maps: the real server cannot decode them."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    for field in ("labels", "annotations"):
        value = meta.get(field)
        if value is None:
            continue
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise errors.bad_request(
                f"json: cannot unmarshal {_type_name(value)} into Go struct field "
                f"ObjectMeta.metadata.{field} of type map[string]string"
            )


def metadata_causes(obj: dict[str, Any]) -> list[Cause]:
    """Name must be a DNS-1123 subdomain; label keys and values must be valid."""
    meta = obj["metadata"]
    causes: list[Cause] = []
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        causes.append(
            errors.cause(
                "FieldValueRequired",
                "metadata.name",
                "Required value: name or generateName is required",
            )
        )
    elif not is_dns_subdomain(name):
        causes.append(
            errors.cause(
                "FieldValueInvalid", "metadata.name", f"Invalid value: {_show(name)}: {_NAME_HELP}"
            )
        )
    for key, value in (meta.get("labels") or {}).items():
        if not selection.is_label_key(key):
            causes.append(
                errors.cause(
                    "FieldValueInvalid",
                    "metadata.labels",
                    f"Invalid value: {_show(key)}: name part must be valid",
                )
            )
        elif not selection.is_label_value(value):
            causes.append(
                errors.cause(
                    "FieldValueInvalid",
                    "metadata.labels",
                    f"Invalid value: {_show(value)}: a valid label must be an empty string or "
                    "consist of alphanumeric characters, '-', '_' or '.', and must start and "
                    "end with an alphanumeric character",
                )
            )
    return causes


def crd_schema(crd: dict[str, Any], version: str) -> dict[str, Any] | None:
    """The openAPIV3Schema of one served version of a CRD object, if any."""
    for ver in crd.get("spec", {}).get("versions", []):
        if ver.get("name") == version:
            schema = ver.get("schema", {}).get("openAPIV3Schema")
            return schema if isinstance(schema, dict) else None
    return None


def prune(schema: dict[str, Any], value: Any, *, root: bool = False, path: str = "") -> list[str]:
    """Drop fields the schema does not know, in place (structural-schema pruning);
    returns the dotted paths dropped, for fieldValidation's warnings and errors."""
    dropped: list[str] = []
    if isinstance(value, dict) and schema.get("type") == "object":
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return dropped
        props: dict[str, Any] = schema.get("properties", {})
        for key in list(value):
            if key in props:
                if not (root and key == "metadata"):
                    dropped += prune(props[key], value[key], path=_join(path, key))
            elif not (root and key in ("apiVersion", "kind", "metadata")):
                del value[key]
                dropped.append(_join(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            dropped += prune(schema["items"], item, path=f"{path}[{i}]")
    return dropped


def _type_ok(kind: str | None, value: Any) -> bool:
    if kind is None:
        return True
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "integer":
        if isinstance(value, float):
            return value.is_integer()
        return isinstance(value, int) and not isinstance(value, bool)
    expected = {"string": str, "boolean": bool, "object": dict, "array": list}.get(kind)
    return expected is not None and isinstance(value, expected)


def _bounds(schema: dict[str, Any], value: Any, path: str) -> list[Cause]:
    causes: list[Cause] = []

    def bad(text: str) -> None:
        causes.append(
            errors.cause(
                "FieldValueInvalid", path, f"Invalid value: {_show(value)}: {path} in body {text}"
            )
        )

    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            bad(f"should be at least {schema['minLength']} chars long")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            bad(f"should be at most {schema['maxLength']} chars long")
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            bad(f"should match '{schema['pattern']}'")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            bad(f"should be greater than or equal to {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            bad(f"should be less than or equal to {schema['maximum']}")
    return causes


def schema_causes(schema: dict[str, Any], value: Any, path: str = "") -> list[Cause]:
    """Every schema violation of ``value``, with dotted field paths (``spec.cpu.x``)."""
    kind = schema.get("type")
    causes: list[Cause] = []
    if "enum" in schema and not any(_same_json(value, v) for v in schema["enum"]):
        # Checked whatever the type, like the real server: 1 for a string enum gets both.
        supported = ", ".join(_show(v) for v in schema["enum"])
        causes.append(
            errors.cause(
                "FieldValueNotSupported",
                path,
                f"Unsupported value: {_show(value)}: supported values: {supported}",
            )
        )
    if not _type_ok(kind, value):
        got = _show(_type_name(value))
        msg = f"Invalid value: {got}: {path or '<root>'} in body must be of type {kind}: {got}"
        return [*causes, errors.cause("FieldValueTypeInvalid", path, msg)]
    if causes:
        return causes
    causes = _bounds(schema, value, path)
    if isinstance(value, dict):
        for req in schema.get("required", []):
            if req not in value:
                causes.append(
                    errors.cause("FieldValueRequired", _join(path, req), "Required value")
                )
        for key, sub in schema.get("properties", {}).items():
            if key in value and key != "metadata":
                causes.extend(schema_causes(sub, value[key], _join(path, key)))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            causes.extend(schema_causes(schema["items"], item, f"{path}[{i}]"))
    return causes


def _same_json(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1."""
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_EVENT_LIMIT = 128  # reportingInstance, action and reason (ValidateEventCreate)


def _required(path: str) -> Cause:
    return errors.cause("FieldValueRequired", path, "Required value")


def _too_long(path: str, limit: int) -> Cause:
    return errors.cause(
        "FieldValueInvalid", path, f'Invalid value: "": can have at most {limit} characters'
    )


def _reporting_causes(obj: dict[str, Any], controller_field: str, message: Any) -> list[Cause]:
    """The legacy rules for an event with eventTime: who reported it, and what."""
    causes: list[Cause] = []
    controller = str(obj.get(controller_field) or "")
    if not controller:
        causes.append(_required(controller_field))
    if not selection.is_label_key(controller):
        why = f"Invalid value: {_show(controller)}: name part must be valid"
        causes.append(errors.cause("FieldValueInvalid", controller_field, why))
    for path in ("reportingInstance", "action", "reason"):
        if not obj.get(path):
            causes.append(_required(path))
        elif len(str(obj[path])) > _EVENT_LIMIT:
            causes.append(_too_long(path, _EVENT_LIMIT))
    if len(str(message or "")) > 1024:
        causes.append(_too_long("message", 1024))
    return causes


def _strict_event_causes(obj: dict[str, Any]) -> list[Cause]:
    """The extra rules for an events.k8s.io/v1 create."""
    causes: list[Cause] = []
    if not obj.get("eventTime"):
        causes.append(_required("eventTime"))
    if obj.get("type") not in ("Normal", "Warning"):
        why = f'Invalid value: "": has invalid value: {obj.get("type") or ""}'
        causes.append(errors.cause("FieldValueInvalid", "type", why))
    for path, internal in (
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
        ("deprecatedSource", "source"),
    ):
        if obj.get(path):
            why = 'Invalid value: "": needs to be unset'
            causes.append(errors.cause("FieldValueInvalid", internal, why))
    return causes


_IMMUTABLE_EVENT_FIELDS = (
    "involvedObject", "reason", "message", "source", "firstTimestamp", "lastTimestamp",
    "count", "reportingComponent", "reportingInstance", "action", "type",
)  # fmt: skip


def _immutable_event_causes(obj: dict[str, Any], old: dict[str, Any]) -> list[Cause]:
    """ValidateEventUpdate through events.k8s.io/v1: what an event says cannot change."""
    new = conversion.event_to_core(obj)
    return [
        errors.cause("FieldValueInvalid", path, "Invalid value: field is immutable")
        for path in _IMMUTABLE_EVENT_FIELDS
        if new.get(path) != old.get(path)
    ]


def event_causes(
    obj: dict[str, Any], *, strict: bool, old: dict[str, Any] | None = None
) -> list[Cause]:
    """ValidateEventCreate/Update: the legacy rules for core/v1 events, plus for
    events.k8s.io/v1 (``strict``) the strict create rules, or on update (``old``, the
    stored core form) immutability. Field paths are the internal (core) names, as the
    real server reports them for both APIs."""
    causes: list[Cause] = []
    ns = obj["metadata"].get("namespace") or ""
    regarding = obj.get("regarding" if strict else "involvedObject")
    involved_ns = str(regarding.get("namespace") or "") if isinstance(regarding, dict) else ""
    if obj.get("eventTime"):
        mismatch = not involved_ns and ns not in ("default", "kube-system")
    else:
        mismatch = (not involved_ns and ns not in ("", "default")) or (
            bool(involved_ns) and ns != involved_ns
        )
    if mismatch:
        why = f"Invalid value: {_show(involved_ns)}: does not match event.namespace"
        causes.append(errors.cause("FieldValueInvalid", "involvedObject.namespace", why))
    if obj.get("eventTime"):
        controller_field = "reportingController" if strict else "reportingComponent"
        message = obj.get("note" if strict else "message")
        causes += _reporting_causes(obj, controller_field, message)
    if strict:
        causes += _strict_event_causes(obj) if old is None else _immutable_event_causes(obj, old)
    return causes


def admit(
    res: resources.Resource,
    obj: dict[str, Any],
    *,
    schema: dict[str, Any] | None,
    strict: str | None = None,
    old: dict[str, Any] | None = None,
) -> list[str]:
    """Validate (and, for custom resources, prune) ``obj`` in place; 422 on any cause.

    Returns the unknown (pruned) field paths. ``strict`` is fieldValidation=Strict:
    unknown fields are then an error, before any other check, as the real decoder
    does: 400 for a create or update (``strict="body"``), 422 on ``patch`` for a patch.
    """
    causes = metadata_causes(obj)
    unknown: list[str] = []
    if schema is not None:
        unknown = prune(schema, obj, root=True)
        if unknown and strict:
            text = ", ".join(f'unknown field "{u}"' for u in unknown)
            if strict == "patch":
                raise errors.ApiError(
                    422,
                    f'{res.qualified_kind} "{obj["metadata"].get("name")}" is invalid: '
                    f"patch: Invalid value: {_show(text)}: strict decoding error: {text}",
                    details={"causes": [errors.cause("FieldValueInvalid", "patch", text)]},
                )
            raise errors.ApiError(400, f"strict decoding error: {text}")
        causes.extend(schema_causes(schema, obj))
    if res is resources.PODS:
        spec = obj.get("spec")
        if not isinstance(spec, dict) or not spec.get("containers"):
            causes.append(_required("spec.containers"))
    if res in (resources.EVENTS, resources.EVENTS_V1):
        causes.extend(event_causes(obj, strict=res is resources.EVENTS_V1, old=old))
    if causes:
        # events.k8s.io events are validated as core Events: their Status names no group.
        target = resources.EVENTS if res is resources.EVENTS_V1 else res
        raise errors.invalid(target, str(obj["metadata"].get("name") or ""), causes)
    return unknown
