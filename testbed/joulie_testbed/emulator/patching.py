"""PATCH bodies: JSON merge patch (RFC 7386) and JSON patch (RFC 6902).

Strategic merge patch is served for built-in kinds as a plain merge patch: maps
merge key by key (enough for labels and annotations) but lists are replaced
whole, with no ``patchMergeKey`` or ``$patch`` directives. Custom resources get
415 for it, as from the real server. Functions mutate the document they are given;
callers pass a private copy.
"""

from __future__ import annotations

import copy
from typing import Any


class PatchError(Exception):
    """Raised when a patch is well-formed but cannot be applied (answered with 422)."""


class BadPatch(Exception):
    """Raised when a patch body is malformed (answered with 400)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result: dict[str, Any] = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, *, for_add: bool) -> int:
    if for_add and token == "-":
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"invalid array index {token!r}")
    idx = int(token)
    limit = len(container) if for_add else len(container) - 1
    if idx > limit:
        raise PatchError(f"array index {idx} out of bounds")
    return idx


def _parent(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"path /{'/'.join(tokens)} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, for_add=False)]
        else:
            raise PatchError(f"path /{'/'.join(tokens)} does not exist")
    return node


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path /{'/'.join(tokens)} does not exist")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, for_add=False)]
    raise PatchError(f"path /{'/'.join(tokens)} does not exist")


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    if isinstance(parent, dict):
        parent[tokens[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, tokens[-1], for_add=True), value)
    else:
        raise PatchError(f"cannot add at /{'/'.join(tokens)}")
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens)
    if isinstance(parent, dict):
        if tokens[-1] not in parent:
            raise PatchError(f"path /{'/'.join(tokens)} does not exist")
        return parent.pop(tokens[-1])
    if isinstance(parent, list):
        return parent.pop(_index(parent, tokens[-1], for_add=False))
    raise PatchError(f"path /{'/'.join(tokens)} does not exist")


def _same(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _apply_op(doc: Any, op: dict[str, Any]) -> Any:
    name = op.get("op")
    if not isinstance(op.get("path"), str):
        raise BadPatch(f"operation {op!r} has no string 'path'")
    path = _pointer(op["path"])
    if name in ("add", "replace", "test") and "value" not in op:
        raise BadPatch(f"operation {name!r} needs a 'value'")
    if name == "add":
        return _add(doc, path, op["value"])
    if name == "remove":
        _remove(doc, path)
        return doc
    if name == "replace":
        _get(doc, path)  # must exist
        if not path:
            return op["value"]
        _remove(doc, path)
        return _add(doc, path, op["value"])
    if name == "test":
        if not _same(_get(doc, path), op["value"]):
            raise PatchError(f"testing value {op['path']} failed: test failed")
        return doc
    if name in ("move", "copy"):
        return _relocate(doc, op, path, move=name == "move")
    raise PatchError(f"Unexpected kind: {name}")  # the real server: 422, like a failed op


def _relocate(doc: Any, op: dict[str, Any], path: list[str], *, move: bool) -> Any:
    if not isinstance(op.get("from"), str):
        raise BadPatch(f"operation {op.get('op')!r} needs a string 'from'")
    source = _pointer(op["from"])
    if not move:
        return _add(doc, path, copy.deepcopy(_get(doc, source)))
    if path[: len(source)] == source and path != source:
        raise PatchError("cannot move a value into one of its children")
    return _add(doc, path, _remove(doc, source))


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902, all six operations, ``~0``/``~1`` escapes; atomic for the caller's copy."""
    if not isinstance(ops, list):
        raise BadPatch("a JSON patch must be a list of operations")
    for op in ops:
        if not isinstance(op, dict):
            raise BadPatch(f"JSON patch operation {op!r} is not an object")
        doc = _apply_op(doc, op)
    return doc
