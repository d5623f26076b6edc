"""Label and field selectors for list requests, parsed like the real API server.

The emulator deliberately has its own parser rather than importing
``joulie_tasks.core.selectors``: it is the test bed for that code, and a shared bug
would then pass every test. Grammar (labels.Parse): comma-AND of ``k``, ``!k``,
``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k>n``, ``k<n``.
Field selectors: comma-AND of ``path=v``, ``path==v``, ``path!=v`` over the
field labels a resource supports; a missing field reads as the empty string.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from joulie_testbed.emulator import errors, resources

Predicate = Callable[[Mapping[str, Any]], bool]

_TOKEN = re.compile(r"\s*(==|!=|=|!|\(|\)|,|>|<|[^\s=!(),<>]+)")
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_KEY = re.compile(rf"(({_DNS_SUBDOMAIN})/)?({_NAME})")
_VALUE = re.compile(rf"({_NAME})?")


def is_label_key(key: str) -> bool:
    m = _KEY.fullmatch(key)
    if m is None:
        return False
    prefix, name = m.group(2) or "", m.group(6)
    return len(prefix) <= 253 and len(name) <= 63


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and _VALUE.fullmatch(value) is not None


class _Tokens:
    def __init__(self, text: str) -> None:
        self.items: list[str] = []
        pos = 0
        stripped = text.rstrip()
        while pos < len(stripped):
            m = _TOKEN.match(stripped, pos)
            if m is None:  # pragma: no cover - the pattern matches any non-space char
                raise errors.bad_request(f"unable to parse requirement: {text!r}")
            self.items.append(m.group(1))
            pos = m.end()
        self.pos = 0

    def peek(self) -> str | None:
        return self.items[self.pos] if self.pos < len(self.items) else None

    def take(self) -> str | None:
        tok = self.peek()
        self.pos += 1
        return tok


def _fail(text: str, why: str) -> errors.ApiError:
    return errors.bad_request(f"unable to parse requirement: {why} (selector {text!r})")


def _values(toks: _Tokens, text: str) -> frozenset[str]:
    if toks.take() != "(":
        raise _fail(text, "expected '(' after set operator")
    values: set[str] = set()
    expect_value = True
    while True:
        tok = toks.take()
        if tok is None:
            raise _fail(text, "missing ')'")
        if tok == ")":
            break
        if tok == ",":
            expect_value = True
            continue
        if not expect_value or not is_label_value(tok):
            raise _fail(text, f"invalid value {tok!r}")
        values.add(tok)
        expect_value = False
    # labels.Parse reads "()" as the set {""}, so ``k in ()`` matches k="" (real: 200).
    return frozenset(values) if values else frozenset({""})


def _requirement(toks: _Tokens, text: str) -> Predicate:
    negate = toks.peek() == "!"
    if negate:
        toks.take()
    key = toks.take()
    if key is None or not is_label_key(key):
        raise _fail(text, f"invalid label key {key!r}")
    if negate:
        return lambda labels: key not in labels
    op = toks.peek()
    if op is None or op == ",":
        return lambda labels: key in labels
    toks.take()
    if op in ("=", "==", "!="):
        nxt = toks.peek()
        value = "" if nxt is None or nxt == "," else toks.take() or ""
        if not is_label_value(value):
            raise _fail(text, f"invalid label value {value!r}")
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if op in ("in", "notin"):
        values = _values(toks, text)
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if op in (">", "<"):
        raw = toks.take() or ""
        try:
            bound = int(raw)
        except ValueError:
            why = f"for 'Gt', 'Lt' operators, the value must be an integer: {raw!r}"
            raise _fail(text, why) from None
        return _compare(key, bound, greater=op == ">")
    raise _fail(text, f"found {op!r}, expected an operator")


def _compare(key: str, bound: int, *, greater: bool) -> Predicate:
    def check(labels: Mapping[str, Any]) -> bool:
        try:
            got = int(labels[key])
        except (KeyError, ValueError, TypeError):
            return False
        return got > bound if greater else got < bound

    return check


def parse_labels(text: str) -> Predicate | None:
    """Compile a label selector into a predicate over a labels mapping (None: match all)."""
    if not text.strip():
        return None
    toks = _Tokens(text)
    preds: list[Predicate] = []
    while True:
        preds.append(_requirement(toks, text))
        tok = toks.take()
        if tok is None:
            break
        if tok != ",":
            raise _fail(text, f"found {tok!r}, expected ','")
    return lambda labels: all(p(labels) for p in preds)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, buf, escaped = [], [], False
    for ch in text:
        if escaped:
            buf.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return parts


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form of a dotted field path; missing reads as ''."""
    return _field(obj, path.split("."))


def _field(obj: Mapping[str, Any], parts: list[str]) -> str:
    node: Any = obj
    for part in parts:
        if not isinstance(node, dict):
            return ""
        node = node.get(part)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return node if isinstance(node, str) else str(node)


def _field_terms(text: str, res: resources.Resource) -> list[tuple[list[str], str, bool]]:
    """(path parts, value, negated) per comma-separated term; 400 on bad syntax or field."""
    terms: list[tuple[list[str], str, bool]] = []
    for raw in text.split(","):
        m = re.fullmatch(r"\s*([^=!\s]+)\s*(==|=|!=)(.*)", raw)
        if m is None:
            raise errors.bad_request(f"invalid selector: '{text}'; can't understand '{raw}'")
        path, op, value = m.group(1), m.group(2), m.group(3).strip()
        if path not in res.field_labels:
            raise errors.bad_request(f'field label not supported: "{path}"')
        path = dict(res.field_paths).get(path, path)
        terms.append((path.split("."), "".join(_split_unescaped(value, "\0")), op == "!="))
    return terms


def index_term(text: str, res: resources.Resource, path: str) -> str | None:
    """The value of a positive ``path=value`` term of a field selector, if it has one.

    Every match of the selector then has that value, so a store index on ``path``
    narrows the candidates (the real API server indexes pods by spec.nodeName).
    """
    if not text.strip() or path not in res.field_labels:
        return None
    wanted = path.split(".")
    for parts, value, negated in _field_terms(text, res):
        if parts == wanted and not negated:
            return value
    return None


def parse_fields(text: str, res: resources.Resource) -> Predicate | None:
    """Compile a field selector into a predicate over a whole object (None: match all)."""
    if not text.strip():
        return None
    terms = _field_terms(text, res)

    def check(obj: Mapping[str, Any]) -> bool:
        return all((_field(obj, parts) == value) != negated for parts, value, negated in terms)

    return check
