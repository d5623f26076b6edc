"""NodePowerProfile names: sanitisation, collision handling, length limits, and
independence from input order."""

from __future__ import annotations

import hashlib
import re

import pytest

from joulie_tasks.core import naming

DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def short_hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:10]


@pytest.mark.parametrize(
    ("name", "sanitised"),
    [
        ("worker-1", "worker-1"),
        ("Worker-1", "worker-1"),
        ("gpu.a", "gpu-a"),
        ("ip-10-0-0-1.ec2.internal", "ip-10-0-0-1-ec2-internal"),
        ("-edge-", "edge"),
        ("..x..", "x"),
        ("ünï", "n"),
        ("...", ""),
        ("a_b c", "a-b-c"),
    ],
    ids=repr,
)
def test_node_names_are_sanitised_as_spec_section_7_says(name: str, sanitised: str) -> None:
    assert naming.sanitise_node_name(name) == sanitised


def test_distinct_names_without_collisions_get_the_plain_name() -> None:
    assert naming.assign_npp_names(["a", "B.c"]) == {"a": "node-a", "B.c": "node-b-c"}


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        (["gpu.a", "gpu-a"], {"gpu-a": "node-gpu-a", "gpu.a": f"node-gpu-a-{short_hash('gpu.a')}"}),
        (["gpu-a", "gpu.a"], {"gpu-a": "node-gpu-a", "gpu.a": f"node-gpu-a-{short_hash('gpu.a')}"}),
        (
            ["gpu.a", "GPU.A"],
            {
                "gpu.a": f"node-gpu-a-{short_hash('gpu.a')}",
                "GPU.A": f"node-gpu-a-{short_hash('GPU.A')}",
            },
        ),
        (["GPU.A"], {"GPU.A": "node-gpu-a"}),
    ],
    ids=["dot-vs-dash", "order-independent", "neither-is-plain", "alone-keeps-plain"],
)
def test_colliding_names_are_kept_apart_deterministically(
    nodes: list[str], expected: dict[str, str]
) -> None:
    assert naming.assign_npp_names(nodes) == expected


def test_a_name_that_sanitises_to_nothing_gets_a_hash() -> None:
    assert naming.assign_npp_names(["..."]) == {"...": f"node-{short_hash('...')}"}


def test_overlong_names_are_truncated_with_a_hash_and_stay_valid() -> None:
    long_a, long_b = "a" * 300, "a" * 299 + "b"
    names: dict[str, str] = {
        str(k): str(v) for k, v in naming.assign_npp_names([long_a, long_b]).items()
    }
    assert names[long_a] != names[long_b]
    for node, npp in names.items():
        assert len(npp) <= naming.MAX_NAME_LENGTH
        assert npp.endswith(short_hash(node))
        assert DNS_SUBDOMAIN.fullmatch(npp)


def test_a_name_exactly_at_the_limit_is_kept_plain() -> None:
    name = "x" * (naming.MAX_NAME_LENGTH - len("node-"))
    assert naming.assign_npp_names([name]) == {name: f"node-{name}"}


def test_a_hashed_name_that_collides_with_a_real_node_gets_a_longer_hash() -> None:
    squatter = f"gpu-a-{short_hash('gpu.a')}"
    assigned = naming.assign_npp_names(["gpu.a", "gpu-a", squatter])
    names: dict[str, str] = {str(k): str(v) for k, v in assigned.items()}
    assert names[squatter] == f"node-{squatter}"
    assert names["gpu-a"] == "node-gpu-a"
    assert names["gpu.a"].startswith(f"node-{squatter}")
    assert len(set(names.values())) == 3


def test_duplicate_input_names_are_one_node() -> None:
    assert naming.assign_npp_names(["a", "a"]) == {"a": "node-a"}
