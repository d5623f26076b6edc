"""tenacity policies: what is retried, how often, how long it waits (sleep injected)."""

from __future__ import annotations

import random

import pytest

from joulie_tasks import errors
from joulie_tasks.adapters import retrying


class Script:
    """A callable that raises the scripted errors in turn, then returns ``"ok"``."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def test_transient_errors_are_retried_until_success() -> None:
    sleeps: list[float] = []
    fn = Script(errors.KubeTransient("503", status=503), errors.KubeUnreachable("reset"))
    assert retrying.transient_retry(sleep=sleeps.append)(fn) == "ok"
    assert fn.calls == 3
    assert len(sleeps) == 2


def test_attempts_are_bounded_and_the_last_error_is_raised() -> None:
    fn = Script(*[errors.KubeTransient("500", status=500) for _ in range(10)])
    with pytest.raises(errors.KubeTransient):
        retrying.transient_retry(sleep=lambda _: None, attempts=4)(fn)
    assert fn.calls == 4


@pytest.mark.parametrize("status", [403, 404, 422])
def test_fatal_errors_fail_fast(status: int) -> None:
    fn = Script(errors.KubeFatal("no", status=status))
    with pytest.raises(errors.KubeFatal):
        retrying.transient_retry(sleep=lambda _: None)(fn)
    assert fn.calls == 1


def test_a_429_waits_at_least_its_retry_after() -> None:
    sleeps: list[float] = []
    fn = Script(errors.KubeTransient("429", status=429, retry_after=2.5))
    retrying.transient_retry(sleep=sleeps.append)(fn)
    assert sleeps
    assert sleeps[0] >= 2.5


def test_retry_after_is_capped_far_below_the_visibility_timeout() -> None:
    from joulie_tasks.queue import celery_app

    sleeps: list[float] = []
    fn = Script(errors.KubeTransient("429", status=429, retry_after=10_000))
    retrying.transient_retry(sleep=sleeps.append)(fn)
    assert sleeps[0] <= retrying.MAX_RETRY_AFTER_S < celery_app.VISIBILITY_TIMEOUT_S


def test_backoff_is_jittered_and_bounded() -> None:
    # Exponential bounds 0.1, 0.2, 0.4, then the 0.5 cap; each pause drawn below its bound
    random.seed(7)
    runs: list[list[float]] = []
    for _ in range(50):
        sleeps: list[float] = []
        fn = Script(*[errors.KubeTransient("500", status=500) for _ in range(4)])
        retrying.transient_retry(sleep=sleeps.append, initial_wait=0.1, max_wait=0.5)(fn)
        assert len(sleeps) == 4
        runs.append(sleeps)
    bounds = [0.1, 0.2, 0.4, 0.5]
    for attempt, bound in enumerate(bounds):
        pauses = [run[attempt] for run in runs]
        assert all(0 <= p <= bound for p in pauses)
        assert len(set(pauses)) > 40  # jittered: no two workers retry in lock step
    assert max(run[3] for run in runs) > 0.4  # the bound grows up to the cap


def test_conflicts_rerun_the_whole_closure_and_transients_do_not() -> None:
    fn = Script(errors.KubeConflict("409", status=409), errors.KubeConflict("409", status=409))
    assert retrying.conflict_retry(sleep=lambda _: None)(fn) == "ok"
    assert fn.calls == 3
    fn = Script(errors.KubeTransient("500", status=500))
    with pytest.raises(errors.KubeTransient):
        retrying.conflict_retry(sleep=lambda _: None)(fn)


def test_every_retry_is_reported_to_the_hook() -> None:
    seen: list[tuple[str, int]] = []
    fn = Script(errors.KubeConflict("409", status=409), errors.KubeConflict("409", status=409))
    retrying.conflict_retry(
        sleep=lambda _: None, on_retry=lambda e, n: seen.append((type(e).__name__, n))
    )(fn)
    assert seen == [("KubeConflict", 1), ("KubeConflict", 2)]
