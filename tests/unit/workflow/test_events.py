"""Node events: one per applied transition, one per newly started deferral, none else."""

from __future__ import annotations

from joulie_tasks.core import models
from joulie_tasks.workflow import events

AP, DP, AE = (
    models.NodeState.ACTIVE_PERFORMANCE,
    models.NodeState.DRAINING_PERFORMANCE,
    models.NodeState.ACTIVE_ECO,
)


def decision(
    node: str, frm: models.NodeState, to: models.NodeState, *, draining: bool = False, **kw: object
) -> models.Decision:
    n = models.NodeName(node)
    transitions = []
    if frm is not to:
        transitions.append(
            models.Transition(
                node=n, from_state=frm, to_state=to, result=models.TransitionResult.APPLIED
            )
        )
    if draining:
        transitions.append(
            models.Transition(
                node=n, from_state=AP, to_state=AE, result=models.TransitionResult.DEFERRED
            )
        )
    return models.Decision(
        node=n,
        planned=models.Profile.ECO,
        profile=models.Profile.ECO if to is not AP else models.Profile.PERFORMANCE,
        draining=draining,
        cap_watts=120,
        policy_name="static-partition-v1",
        performance_pods=2 if draining else 0,
        from_state=frm,
        to_state=to,
        transitions=tuple(transitions),
        **kw,  # type: ignore[arg-type]
    )


def bodies(*ds: models.Decision, failures: dict[str, str] | None = None) -> list[dict[str, object]]:
    return events.event_bodies(
        ds, tick_time=1_700_000_000, failures=failures or {}, tick_id="t1", instance="host:1"
    )


def test_an_applied_transition_makes_one_normal_event_on_the_node() -> None:
    (body,) = bodies(decision("a", AP, AE))
    assert body["reason"] == events.APPLIED_REASON
    assert body["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": "a"}
    assert body["type"] == "Normal"
    assert "ActivePerformance → ActiveEco" in str(body["message"])
    assert "static-partition-v1" in str(body["message"])
    assert body["firstTimestamp"] == "2023-11-14T22:13:20Z"


def test_a_new_deferral_is_one_event_and_a_continuing_one_is_silent() -> None:
    (body,) = bodies(decision("a", AP, DP, draining=True))
    assert body["reason"] == events.DEFERRED_REASON
    assert "2 performance pod(s)" in str(body["message"])
    assert bodies(decision("a", DP, DP, draining=True)) == []


def test_no_event_for_failed_postponed_or_unchanged_nodes() -> None:
    assert bodies(decision("a", AP, AE), failures={"a": "boom"}) == []
    assert bodies(decision("a", AP, AE, postponed=True)) == []
    assert bodies(decision("a", AE, AE)) == []


def test_event_names_are_unique_per_tick_node_and_reason() -> None:
    names = [b["metadata"]["name"] for b in bodies(decision("a", AP, AE), decision("b", AP, AE))]  # type: ignore[index]
    assert len(set(names)) == 2


def test_sending_never_raises_and_counts_what_failed() -> None:
    from joulie_tasks import errors
    from tests.fakes import FakeKube

    fake = FakeKube()
    fake.fail("create", "events", *[errors.KubeTransient("503", status=503) for _ in range(5)])
    sent = bodies(*(decision(f"n{i}", AP, AE) for i in range(6)))
    assert events.send_events(sent, gateway=fake) == 5
    assert [w[0:2] for w in fake.writes] == [("create", "events")]
