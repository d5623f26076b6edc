"""The one Fence of a tick: fresh checks ask the store, a check younger than the trust
window stands before an API write, a lost fence is seen once the window has passed."""

from __future__ import annotations

import pytest

from joulie_tasks import config
from joulie_tasks.workflow import fence as fencing
from joulie_tasks.workflow import lifecycle, reconcile
from tests.fakes import MemoryStateStore

SETTINGS = config.read_settings({"LOCK_TTL": "30s"})


class CountingStore(MemoryStateStore):
    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def holds_fence(self, tick_id: str, token: int, *, ttl_s: float) -> bool:
        self.asked += 1
        return super().holds_fence(tick_id, token, ttl_s=ttl_s)


def started() -> tuple[CountingStore, lifecycle.TickRef, list[float]]:
    state = CountingStore()
    ref = lifecycle.begin_tick(state=state, settings=SETTINGS, tick_time=1_700_000_000.0)
    assert ref is not None
    return state, ref, [100.0]


def test_holds_always_asks_the_store_and_still_holds_trusts_a_fresh_check() -> None:
    state, ref, now = started()
    fence = fencing.Fence(ref, state=state, settings=SETTINGS, clock=lambda: now[0])
    assert fence.holds()
    assert fence.holds()
    assert state.asked == 2
    # Within the trust window the check stands
    now[0] += fencing.FENCE_TRUST_S / 2
    assert fence.still_holds()
    assert state.asked == 2
    # After it, the store is asked again
    now[0] += fencing.FENCE_TRUST_S
    assert fence.still_holds()
    assert state.asked == 3


def test_a_lost_fence_is_seen_once_the_trust_window_has_passed() -> None:
    state, ref, now = started()
    fence = fencing.Fence(ref, state=state, settings=SETTINGS, clock=lambda: now[0])
    assert fence.still_holds()  # never confirmed: asks
    assert state.release_lock(ref.tick_id)
    now[0] += fencing.FENCE_TRUST_S + 0.01
    assert not fence.still_holds()
    assert not fence.still_holds()  # a failed check is never trusted


def test_stages_run_from_one_table_in_the_spec_order() -> None:
    assert reconcile.STAGES == ("snapshot", "classify", "plan", "guard", "write")
    state, ref, _ = started()
    with pytest.raises(ValueError, match="unknown stage 'nope'"):
        reconcile.run_stage(
            "nope", ref, gateway=lambda: None, state=state, cache=None, settings=SETTINGS
        )  # type: ignore[arg-type,return-value]
