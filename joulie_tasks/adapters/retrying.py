"""tenacity policies for Kubernetes calls (docs/SPEC.md §9): the only home of retry and jitter.

Two named factories. ``transient_retry`` wraps one API call and retries 5xx, 429
(honouring ``Retry-After``), timeouts and connection errors with jittered
exponential backoff. ``conflict_retry`` wraps a whole read-recompute-apply
closure and retries it on 409. Both are bounded; anything else (403, 404, 422 …)
is a ``KubeFatal`` and fails at once. ``sleep`` is injectable so tests take no time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import tenacity

from joulie_tasks import errors

logger = logging.getLogger(__name__)

#: Longest wait honoured for a Retry-After header; far below the broker's visibility
#: timeout, so a retrying task is never redelivered while it sleeps.
MAX_RETRY_AFTER_S = 30.0
TRANSIENT_ATTEMPTS = 5
CONFLICT_ATTEMPTS = 6

RetryHook = Callable[[BaseException, int], None]


class _WaitRetryAfter(tenacity.wait.wait_base):
    """Exponential backoff with jitter, but never shorter than a 429's Retry-After."""

    def __init__(self, *, initial: float, maximum: float) -> None:
        self._backoff = tenacity.wait_random_exponential(multiplier=initial, max=maximum)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        delay = float(self._backoff(retry_state))
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, errors.KubeError) and exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, MAX_RETRY_AFTER_S))
        return delay


def _before_sleep(label: str, attempts: int, hook: RetryHook | None) -> Callable[..., None]:
    def log_attempt(retry_state: tenacity.RetryCallState) -> None:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        logger.info(
            "%s: attempt %d/%d failed (%s); retrying in %.2fs",
            label,
            retry_state.attempt_number,
            attempts,
            exc,
            wait,
        )
        if hook is not None and exc is not None:
            hook(exc, retry_state.attempt_number)

    return log_attempt


def transient_retry(
    *,
    label: str = "kube call",
    attempts: int = TRANSIENT_ATTEMPTS,
    initial_wait: float = 0.1,
    max_wait: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: RetryHook | None = None,
) -> tenacity.Retrying:
    """Retry ``KubeTransient`` (5xx, 429, timeouts, connection errors) with backoff."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(errors.KubeTransient),
        stop=tenacity.stop_after_attempt(attempts),
        wait=_WaitRetryAfter(initial=initial_wait, maximum=max_wait),
        sleep=sleep,
        reraise=True,
        before_sleep=_before_sleep(label, attempts, on_retry),
    )


def conflict_retry(
    *,
    label: str = "kube write",
    attempts: int = CONFLICT_ATTEMPTS,
    initial_wait: float = 0.02,
    max_wait: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: RetryHook | None = None,
) -> tenacity.Retrying:
    """Retry a read-recompute-apply closure on ``KubeConflict`` (409)."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(errors.KubeConflict),
        stop=tenacity.stop_after_attempt(attempts),
        wait=_WaitRetryAfter(initial=initial_wait, maximum=max_wait),
        sleep=sleep,
        reraise=True,
        before_sleep=_before_sleep(label, attempts, on_retry),
    )


#: Longest pause between two attempts of a long-running process to reach a dependency.
WAIT_MAX_S = 30.0


def until_reachable(what: str, *, sleep: Callable[[float], None] = time.sleep) -> tenacity.Retrying:
    """Retry without end on ``StateStoreError``, 1 s doubling to ``WAIT_MAX_S``: a worker
    or beat started before Redis waits for it instead of exiting (and crash-looping under
    its supervisor). Logs "waiting for <what> (retrying in Ns)" before each pause."""

    def log(state: tenacity.RetryCallState) -> None:
        delay = state.next_action.sleep if state.next_action else 0.0
        error = state.outcome.exception() if state.outcome else None
        logger.warning("waiting for %s (retrying in %.0fs): %s", what, delay, error)

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(errors.StateStoreError),
        wait=tenacity.wait_exponential(multiplier=1, min=1, max=WAIT_MAX_S),
        before_sleep=log,
        sleep=sleep,
        reraise=True,
    )
