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

from joulie_tasks.emulator import errors, resources, selection

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


def prune(schema: dict[str, Any], value: Any, *, root: bool = False) -> None:
    """Drop fields the schema does not know, in place (structural-schema pruning)."""
    if isinstance(value, dict) and schema.get("type") == "object":
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return
        props: dict[str, Any] = schema.get("properties", {})
        for key in list(value):
            if key in props:
                if not (root and key == "metadata"):
                    prune(props[key], value[key])
            elif not (root and key in ("apiVersion", "kind", "metadata")):
                del value[key]
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            prune(schema["items"], item)


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


def admit(res: resources.Resource, obj: dict[str, Any], *, schema: dict[str, Any] | None) -> None:
    """Validate (and, for custom resources, prune) ``obj`` in place; 422 on any cause."""
    causes = metadata_causes(obj)
    if schema is not None:
        prune(schema, obj, root=True)
        causes.extend(schema_causes(schema, obj))
    if causes:
        raise errors.invalid(res, str(obj["metadata"].get("name") or ""), causes)
