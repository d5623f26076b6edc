"""The policy registry (core/plan.POLICIES): one entry per POLICY_TYPE name, each naming
the parameters it reads, its assignment and its provenance; defaults written once.

Covers: every policy name is registered and nothing else; the provenance strings are
docs/SPEC.md §5's; each entry's parameters are PolicyParams fields whose defaults are
the Settings defaults (config.py takes them from the model); ``make_plan`` writes the
registered provenance; the unknown-policy fallback is unchanged.
"""

from __future__ import annotations

import pytest

from joulie_tasks import config
from joulie_tasks.core import models, plan

SPEC_PROVENANCE = {
    models.PolicyName.STATIC_PARTITION: "static-partition-v1",
    models.PolicyName.QUEUE_AWARE_V1: "queue-aware-v1",
    models.PolicyName.RULE_SWAP_V1: "rule-swap-v1",
}


def test_every_policy_name_is_registered_once_with_its_spec_provenance() -> None:
    assert set(plan.POLICIES) == set(models.PolicyName)
    assert {name: p.provenance for name, p in plan.POLICIES.items()} == SPEC_PROVENANCE
    assert all(p.name is name for name, p in plan.POLICIES.items())


@pytest.mark.parametrize("policy", list(plan.POLICIES.values()), ids=lambda p: p.name.value)
def test_a_policys_parameters_are_model_fields_with_one_default(policy: plan.Policy) -> None:
    defaults, settings = models.PolicyParams(), config.read_settings({})
    for field in policy.params.model_fields:
        assert field in models.PolicyParams.model_fields
        if field in config.Settings.model_fields:  # interval_seconds is RECONCILE_INTERVAL
            assert getattr(settings, field) == getattr(defaults, field), field


@pytest.mark.parametrize("name", list(models.PolicyName), ids=str)
def test_a_plan_names_the_registered_provenance(name: models.PolicyName) -> None:
    result = plan.make_plan(
        ["a", "b"],
        demand=models.Demand(),
        params=models.PolicyParams(policy=name),
        tick_time=0,
    )
    assert result.policy_name == SPEC_PROVENANCE[name]


def test_an_unknown_policy_still_falls_back_to_static_partition() -> None:
    settings = config.read_settings({"POLICY_TYPE": "Nope"})
    assert settings.policy is models.PolicyName.STATIC_PARTITION
    assert settings.policy_fell_back
    assert plan.POLICIES[settings.policy].provenance == "static-partition-v1"
