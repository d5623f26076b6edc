"""The ports (joulie_tasks/ports) and what implements them.

Covers: every adapter and every fake has each member of the ports it stands behind,
with the same parameters (names, kinds, defaults present or not) — mypy checks the
adapters where the entry points hand them to the workflow, this also holds the
tests' fakes to the ports; every metric name is unique, used by the code, and
written in ports/metrics.py only (what the ports may import is import-linter's).
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest

from joulie_tasks import ports
from joulie_tasks.adapters import cache_store, kube, store
from tests.fakes import FakeKube, MemoryStateStore

PACKAGE = Path(ports.__file__).resolve().parents[1]

IMPLEMENTS = [
    (store.RedisStore, ports.state.StateStore),
    (MemoryStateStore, ports.state.StateStore),
    (cache_store.CacheStore, ports.cache.TickCache),
    (cache_store.CacheStore, ports.cache.WatchCache),
    (kube.ApiGateway, ports.cluster.KubeGateway),
    (kube.ApiGateway, ports.cluster.WatchGateway),
    (FakeKube, ports.cluster.KubeGateway),
]


def members(protocol: type) -> dict[str, Any]:
    """The public members a protocol declares, its own and its bases'."""
    found: dict[str, Any] = {}
    for cls in reversed(protocol.__mro__):
        if cls is object or not getattr(cls, "_is_protocol", False):
            continue
        for name, value in vars(cls).items():
            if not name.startswith("_"):
                found[name] = value
        found.update({n: None for n in getattr(cls, "__annotations__", {}) if n[0] != "_"})
    return found


def shape(fn: Any) -> list[tuple[str, Any, bool]]:
    """(name, kind, has a default) of each parameter."""
    return [
        (p.name, p.kind, p.default is not inspect.Parameter.empty)
        for p in inspect.signature(fn).parameters.values()
    ]


@pytest.mark.parametrize(
    ("impl", "protocol"), IMPLEMENTS, ids=[f"{i.__name__}-{p.__name__}" for i, p in IMPLEMENTS]
)
def test_each_implementation_has_every_member_of_its_port(impl: type, protocol: type) -> None:
    wanted = members(protocol)
    assert wanted, f"{protocol.__name__} declares nothing"
    for name, declared in wanted.items():
        if declared is None:  # a data member (request_counts): set by __init__
            continue
        assert hasattr(impl, name), f"{impl.__name__} has no {name}() of {protocol.__name__}"
        assert shape(getattr(impl, name)) == shape(declared), (
            f"{impl.__name__}.{name} does not take what {protocol.__name__}.{name} takes"
        )


def test_the_state_store_is_the_union_of_the_small_ports() -> None:
    small = [
        ports.state.LeaderLock,
        ports.state.TickData,
        ports.state.WriteBatches,
        ports.state.FsmStore,
        ports.state.MetricsSink,
        ports.state.MetricValues,
        ports.state.TickRecords,
        ports.state.Pause,
    ]
    union: set[str] = set()
    for port in small:
        names = set(members(port))
        assert not names & union, f"{port.__name__} repeats {names & union}"
        union |= names
    assert set(members(ports.state.StateStore)) - union == {"close", "ping"}


def _metric_names() -> dict[str, str]:
    return {
        name: value
        for name, value in vars(ports.metrics).items()
        if name.isupper() and isinstance(value, str) and value.startswith("joulie_")
    }


def test_metric_names_are_unique() -> None:
    names = _metric_names()
    assert len(set(names.values())) == len(names)


def _sources() -> dict[str, str]:
    return {
        str(p.relative_to(PACKAGE)): p.read_text()
        for p in sorted(PACKAGE.rglob("*.py"))
        if p.parent.name != "ports" or p.name != "metrics.py"
    }


def test_every_metric_name_is_used_by_the_code() -> None:
    code = "\n".join(_sources().values())
    unused = {name for name in _metric_names() if f"metrics.{name}" not in code}
    assert unused == set()


def test_no_other_module_writes_a_metric_name() -> None:
    names = set(_metric_names().values())
    written = {
        (path, node.value)
        for path, text in _sources().items()
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and any(node.value.startswith(n) for n in names)
    }
    assert written == set()
