"""Kubernetes label selectors in string form, for NODE_SELECTOR (docs/SPEC.md §2, §3).

Supports what ``kubectl -l`` accepts for equality and set requirements: ``k=v``,
``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k`` (exists), ``!k`` (does
not exist); commas AND them; whitespace between tokens is ignored; the empty string
selects everything. Keys and values are validated as the API server validates label
keys and values. ``=``/``==`` parse to ``In`` with one value and ``!=`` to ``NotIn``, as
in metav1.LabelSelectorRequirement, so equal selectors compare equal. The numeric
``>``/``<`` operators are rejected: docs/SPEC.md §2 does not list them.

Pure: no I/O. Errors are :class:`SelectorError` with the 0-based character position.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum

from joulie_tasks.core import models

_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NAME_MAX = 63
_PREFIX_MAX = 253
# Characters that end an identifier; whitespace ends one too.
_SPECIAL = frozenset("=!(),<>")


class SelectorError(ValueError):
    """Raised when a selector string is not valid; ``position`` is a 0-based index."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"at position {position}: {reason}")
        self.position = position
        self.reason = reason


class SelectorOperator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class SelectorRequirement(models.Frozen):
    """One requirement; ``values`` are sorted and distinct (empty for the existence ops)."""

    key: str
    operator: SelectorOperator
    values: tuple[str, ...] = ()

    def __str__(self) -> str:
        op, vals = self.operator, self.values
        if op is SelectorOperator.EXISTS:
            return self.key
        if op is SelectorOperator.DOES_NOT_EXIST:
            return f"!{self.key}"
        if len(vals) == 1:
            return f"{self.key}{'=' if op is SelectorOperator.IN else '!='}{vals[0]}"
        word = "in" if op is SelectorOperator.IN else "notin"
        return f"{self.key} {word} ({','.join(vals)})"


class LabelSelector(models.Frozen):
    """A conjunction of requirements; no requirements matches every label set."""

    requirements: tuple[SelectorRequirement, ...] = ()

    def __str__(self) -> str:
        """The canonical string form; it parses back to an equal selector."""
        return ",".join(str(r) for r in self.requirements)


def parse_selector(text: str) -> LabelSelector:
    """Parse a label-selector string; raise :class:`SelectorError` saying where it fails."""
    return _Parser(text).parse()


def matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy every requirement, with Kubernetes semantics.

    ``!=`` and ``notin`` match when the key is absent, as in Kubernetes.
    """
    return all(_matches_one(r, labels) for r in selector.requirements)


def _matches_one(req: SelectorRequirement, labels: Mapping[str, str]) -> bool:
    present = req.key in labels
    if req.operator is SelectorOperator.EXISTS:
        return present
    if req.operator is SelectorOperator.DOES_NOT_EXIST:
        return not present
    hit = present and labels[req.key] in req.values
    return hit if req.operator is SelectorOperator.IN else not hit


def label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid Kubernetes label key (``[prefix/]name``), or None."""
    return _key_problem(key)


def _key_problem(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return f"invalid label key {key!r}: prefix part must not be empty"
        if len(prefix) > _PREFIX_MAX or not _DNS_SUBDOMAIN.fullmatch(prefix):
            return (
                f"invalid label key {key!r}: prefix must be a DNS subdomain "
                f"of at most {_PREFIX_MAX} characters"
            )
    if not name or len(name) > _NAME_MAX or not _NAME.fullmatch(name):
        return (
            f"invalid label key {key!r}: name must be 1-{_NAME_MAX} characters of "
            "[A-Za-z0-9-_.], starting and ending with a letter or digit"
        )
    return None


def _value_problem(value: str) -> str | None:
    if value and (len(value) > _NAME_MAX or not _NAME.fullmatch(value)):
        return (
            f"invalid label value {value!r}: must be at most {_NAME_MAX} characters of "
            "[A-Za-z0-9-_.], starting and ending with a letter or digit"
        )
    return None


class _Parser:
    """A recursive-descent parser over the raw string; positions index ``text``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> LabelSelector:
        reqs: list[SelectorRequirement] = []
        self._skip_space()
        if self.pos == len(self.text):
            return LabelSelector()
        while True:
            reqs.append(self._requirement())
            self._skip_space()
            if self.pos == len(self.text):
                return LabelSelector(requirements=tuple(reqs))
            self._expect(",", "expected ',' or end of selector")

    def _requirement(self) -> SelectorRequirement:
        self._skip_space()
        if self._peek() == "!" and self.text[self.pos + 1 : self.pos + 2] != "=":
            self.pos += 1
            key = self._key()
            return SelectorRequirement(key=key, operator=SelectorOperator.DOES_NOT_EXIST)
        key = self._key()
        self._skip_space()
        if self.pos == len(self.text) or self._peek() == ",":
            return SelectorRequirement(key=key, operator=SelectorOperator.EXISTS)
        for symbol, op in (("==", "In"), ("!=", "NotIn"), ("=", "In")):
            if self.text.startswith(symbol, self.pos):
                self.pos += len(symbol)
                self._skip_space()
                value = self._value()
                return SelectorRequirement(key=key, operator=SelectorOperator(op), values=(value,))
        start = self.pos
        word = self._identifier()
        if word not in ("in", "notin"):
            raise SelectorError(start, "expected one of '=', '==', '!=', 'in', 'notin', ',' or end")
        op = SelectorOperator.IN if word == "in" else SelectorOperator.NOT_IN
        return SelectorRequirement(key=key, operator=op, values=self._value_set())

    def _value_set(self) -> tuple[str, ...]:
        self._skip_space()
        self._expect("(", "expected '('")
        values: set[str] = set()
        while True:
            self._skip_space()
            if self._peek() == ")" and not values:
                raise SelectorError(self.pos, "expected at least one value in '( )'")
            values.add(self._value())
            self._skip_space()
            if self._peek() == ")":
                self.pos += 1
                return tuple(sorted(values))
            self._expect(",", "expected ',' or ')'")

    def _key(self) -> str:
        self._skip_space()
        start = self.pos
        key = self._identifier()
        if not key:
            raise SelectorError(start, "expected a label key")
        problem = _key_problem(key)
        if problem:
            raise SelectorError(start, problem)
        return key

    def _value(self) -> str:
        start = self.pos
        value = self._identifier()
        problem = _value_problem(value)
        if problem:
            raise SelectorError(start, problem)
        return value

    def _identifier(self) -> str:
        start = self.pos
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in _SPECIAL or char.isspace():
                break
            self.pos += 1
        return self.text[start : self.pos]

    def _expect(self, char: str, reason: str) -> None:
        if self._peek() != char:
            raise SelectorError(self.pos, reason)
        self.pos += 1

    def _peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def _skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
