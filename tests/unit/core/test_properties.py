"""Properties of the pure core, checked with hypothesis.

- the performance count stays within its bounds under every policy and parameter;
- queue-aware hp_count never decreases as performance demand grows;
- plans are deterministic and independent of the input order;
- NodePowerProfile names are unique and valid, even for adversarial node names;
- a converged cluster needs no writes, and applying a diff then diffing again
  yields nothing (with pods readable or not);
- no node is downgraded while pod counts are unknown;
- selectors and durations round-trip through their canonical forms.
"""

from __future__ import annotations

import hashlib
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from joulie_tasks.core import durations, guard, models, naming, plan, selectors, write
from tests.unit.builders import (
    DRAINING_LABEL,
    PROFILE_LABEL,
    make_node,
    make_pod,
    run_core,
)

FEW = settings(max_examples=100, deadline=None)
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

node_names = st.text(alphabet="abcAB019.-_", min_size=1, max_size=12)
fractions = st.floats(min_value=-0.5, max_value=1.5, allow_nan=False)
policy_params = st.builds(
    models.PolicyParams,
    policy=st.sampled_from(models.PolicyName),
    interval_seconds=st.floats(min_value=0.0, max_value=600.0),
    static_hp_frac=fractions,
    queue_hp_base_frac=fractions,
    queue_hp_min=st.integers(-3, 12),
    queue_hp_max=st.integers(-3, 12),
    queue_perf_per_hp_node=st.integers(-2, 20),
)
label_values = st.sampled_from([None, "performance", "eco", "draining-performance", "junk"])


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[models.NodeInfo], list[models.PodInfo] | None]:
    names = draw(st.lists(node_names, max_size=8, unique=True))
    nodes = [
        make_node(
            name,
            managed=draw(st.booleans()) or draw(st.booleans()),
            unschedulable=draw(st.integers(0, 5)) == 0,
            profile=draw(label_values),
            draining=draw(st.sampled_from([None, "true", "false"])),
        )
        for name in names
    ]
    if draw(st.integers(0, 4)) == 0:
        return nodes, None
    pods = [
        make_pod(
            f"p{i}",
            node=draw(st.sampled_from([None, *names])),
            phase=draw(st.sampled_from(["Running", "Pending", "Succeeded"])),
            selector=draw(st.sampled_from([None, "performance", "eco", " performance "])),
        )
        for i in range(draw(st.integers(0, 12)))
    ]
    return nodes, pods


@FEW
@given(
    count=st.integers(0, 12),
    params=policy_params,
    pods=st.integers(0, 200),
    t=st.integers(0, 10**10),
)
def test_the_performance_count_stays_within_bounds(
    count: int, params: models.PolicyParams, pods: int, t: int
) -> None:
    nodes = [models.NodeName(f"n{i:02}") for i in range(count)]
    result = plan.make_plan(
        nodes, demand=models.Demand(performance_pods=pods), params=params, tick_time=float(t)
    )
    assert 0 <= result.hp_count <= count
    assert len(result.assignments) == count
    assert result.hp_count == sum(
        a.profile is models.Profile.PERFORMANCE for a in result.assignments
    )
    if params.policy is models.PolicyName.QUEUE_AWARE_V1:
        assert result.hp_count >= min(max(params.queue_hp_min, 0), count)
    if params.policy is models.PolicyName.RULE_SWAP_V1:
        assert result.hp_count >= count - 1


@FEW
@given(
    count=st.integers(0, 12),
    params=policy_params,
    low=st.integers(0, 300),
    extra=st.integers(0, 300),
)
def test_queue_aware_hp_count_is_monotone_in_performance_demand(
    count: int, params: models.PolicyParams, low: int, extra: int
) -> None:
    def hp(pods: int) -> int:
        return plan.queue_aware_v1(
            count,
            performance_pods=pods,
            base_frac=params.queue_hp_base_frac,
            hp_min=params.queue_hp_min,
            hp_max=params.queue_hp_max,
            perf_per_node=params.queue_perf_per_hp_node,
        )

    assert hp(low) <= hp(low + extra)


@FEW
@given(
    names=st.lists(node_names, max_size=10, unique=True),
    params=policy_params,
    pods=st.integers(0, 50),
    t=st.floats(min_value=0, max_value=2e9),
    data=st.data(),
)
def test_plans_are_deterministic_and_independent_of_input_order(
    names: list[str], params: models.PolicyParams, pods: int, t: float, data: st.DataObject
) -> None:
    demand = models.Demand(performance_pods=pods)
    nodes = [models.NodeName(n) for n in names]
    shuffled = data.draw(st.permutations(nodes))
    first = plan.make_plan(nodes, demand=demand, params=params, tick_time=t)
    assert first == plan.make_plan(shuffled, demand=demand, params=params, tick_time=t)
    assert [a.node for a in first.assignments] == sorted(nodes, key=str.encode)


@st.composite
def adversarial_names(draw: st.DrawFn) -> list[str]:
    base = draw(
        st.lists(
            st.one_of(
                node_names,
                st.text(min_size=0, max_size=6),
                st.text(alphabet="a.", min_size=250, max_size=270),
            ),
            max_size=10,
        )
    )
    # Squatters: nodes literally named like another node's hashed object name.
    for name in draw(st.lists(st.sampled_from(base), max_size=3)) if base else []:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
        base.append(f"{naming.sanitise_node_name(name)}-{digest[:10]}")
        base.append(f"{naming.sanitise_node_name(name)}-{digest[:16]}")
    return base


@FEW
@given(names=adversarial_names(), data=st.data())
def test_profile_object_names_are_unique_valid_and_order_independent(
    names: list[str], data: st.DataObject
) -> None:
    assigned = naming.assign_npp_names(names)
    assert set(assigned) == set(names)
    assert len(set(assigned.values())) == len(assigned)
    for npp in assigned.values():
        assert len(npp) <= naming.MAX_NAME_LENGTH
        assert npp.startswith("node-")
        assert DNS_SUBDOMAIN.fullmatch(npp)
    assert naming.assign_npp_names(data.draw(st.permutations(names))) == assigned


@FEW
@given(cluster=clusters(), params=policy_params, t=st.integers(0, 10**6))
def test_applying_the_diff_then_diffing_again_yields_nothing_and_touches_only_eligible_nodes(
    cluster: tuple[list[models.NodeInfo], list[models.PodInfo] | None],
    params: models.PolicyParams,
    t: int,
) -> None:
    nodes, pods = cluster
    writes = run_core(nodes, pods=pods, params=params, tick_time=t)
    new_nodes, new_npps = write.simulate_apply(writes, nodes=nodes, profiles=[])
    assert run_core(new_nodes, pods=pods, profiles=new_npps, params=params, tick_time=t).empty
    # Only eligible nodes were touched.
    eligible = {
        n.name for n in nodes if n.labels.get("joulie.io/managed") == "true" and not n.unschedulable
    }
    assert writes.nodes() <= eligible


@FEW
@given(cluster=clusters(), params=policy_params, t=st.integers(0, 10**6))
def test_no_node_is_downgraded_while_pod_counts_are_unknown(
    cluster: tuple[list[models.NodeInfo], list[models.PodInfo] | None],
    params: models.PolicyParams,
    t: int,
) -> None:
    nodes, _ = cluster
    writes = run_core(nodes, pods=None, params=params, tick_time=t)
    before = {
        n.name: guard.read_node_state(
            n.labels, profile_label=PROFILE_LABEL, draining_label=DRAINING_LABEL
        )
        for n in nodes
    }
    settled_eco = (models.NodeState.ACTIVE_ECO, models.NodeState.DRAINING_PERFORMANCE)
    for label_write in writes.labels:
        if label_write.labels[PROFILE_LABEL] == "eco":
            assert before[label_write.node] in settled_eco
        # a draining node kept at eco stays draining (clearing the label completes the
        # downgrade); turning it back to performance is always allowed
        if (
            before[label_write.node] is models.NodeState.DRAINING_PERFORMANCE
            and label_write.labels[PROFILE_LABEL] == "eco"
        ):
            assert label_write.labels.get(DRAINING_LABEL, "true") == "true"
    for profile_write in writes.profiles:
        if profile_write.spec.profile is models.Profile.ECO:
            assert before[profile_write.spec.node_name] in settled_eco


label_names = st.from_regex(r"[a-z0-9]([-a-z0-9_.]{0,8}[a-z0-9])?", fullmatch=True)
requirements = st.one_of(
    st.builds(
        selectors.SelectorRequirement,
        key=label_names,
        operator=st.sampled_from(
            [selectors.SelectorOperator.IN, selectors.SelectorOperator.NOT_IN]
        ),
        values=st.lists(
            st.one_of(st.just(""), label_names), min_size=1, max_size=3, unique=True
        ).map(lambda vs: tuple(sorted(vs))),
    ),
    st.builds(
        selectors.SelectorRequirement,
        key=label_names,
        operator=st.sampled_from(
            [selectors.SelectorOperator.EXISTS, selectors.SelectorOperator.DOES_NOT_EXIST]
        ),
    ),
)


@FEW
@given(reqs=st.lists(requirements, max_size=4))
def test_selectors_round_trip_through_their_canonical_form(
    reqs: list[selectors.SelectorRequirement],
) -> None:
    selector = selectors.LabelSelector(requirements=tuple(reqs))
    assert selectors.parse_selector(str(selector)) == selector


@FEW
@given(text=st.text(max_size=30))
def test_selector_parsing_either_succeeds_or_raises_selector_error(text: str) -> None:
    position = 0
    try:
        selectors.parse_selector(text)
    except selectors.SelectorError as error:
        position = error.position
    assert 0 <= position <= len(text)


@FEW
@given(ns=st.integers(-(10**15), 10**15))
def test_durations_round_trip_at_nanosecond_precision(ns: int) -> None:
    seconds = ns / 1e9
    assert round(durations.parse_duration(durations.format_duration(seconds)) * 1e9) == round(
        seconds * 1e9
    )


@FEW
@given(text=st.text(max_size=12))
def test_duration_parsing_either_succeeds_or_raises_value_error(text: str) -> None:
    message = durations.EXPECTED
    try:
        durations.parse_duration(text)
    except ValueError as error:
        message = str(error)
    assert message == durations.EXPECTED
