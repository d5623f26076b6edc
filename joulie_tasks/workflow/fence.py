"""The tick's fence: the one place that asks whether a tick may still act.

A tick may write only while it holds the lock with the newest fencing token
(docs/SPEC.md, and docs/ARCHITECTURE.md "where each guarantee is enforced"). Every
such question goes through one :class:`Fence`, held and asked by the tick's runner
(runner.py): the liveness check before a stage runs (snapshot, classify, plan,
guard, write), the check before a write batch, the check before every API write of
a batch, and the one before profile deletes. Each fresh check also renews the lock
(``StateStore.holds_fence``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from joulie_tasks import config, ports
from joulie_tasks.workflow import lifecycle

#: How long a successful fence check is trusted before an API write (monotonic
#: clock). The check renews the lock for LOCK_TTL, so nobody else can take it
#: meanwhile; a stall of any length outlasts this and forces a fresh check; and it
#: spares one Redis round trip per API write, a quarter of a write's CPU (bench/).
FENCE_TRUST_S = 0.25


class Fence:
    """Whether ``ref`` still holds the lock with the newest token."""

    def __init__(
        self,
        ref: lifecycle.TickRef,
        *,
        state: ports.state.StateStore,
        settings: config.Settings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ref = ref
        self._state = state
        self._ttl = settings.lock_ttl
        self._trust = min(FENCE_TRUST_S, settings.lock_ttl / 10)
        self._clock = clock
        self._confirmed = -math.inf

    def holds(self) -> bool:
        """Ask the store now (renews the lock): before a stage or a batch."""
        asked = self._clock()
        if not self._state.holds_fence(self.ref.tick_id, self.ref.token, ttl_s=self._ttl):
            return False
        self._confirmed = max(self._confirmed, asked)
        return True

    def still_holds(self) -> bool:
        """Before each API write: a check younger than the trust window stands."""
        if self._clock() - self._confirmed < self._trust:
            return True
        return self.holds()
