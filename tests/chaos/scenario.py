"""The shape most chaos rows share: seed a cluster, start a worker, (converge,) inject,
drive ticks until converged, check nothing was lost, record the row.

``Scenario`` is a row's starting point as data; ``Chaos`` (the ``chaos`` fixture) holds
the test's real parts and runs that start, so a test states only its fault and what it
checks. A row that starts differently (a worker that must not start, a second worker,
a Sentinel stack) keeps its own set-up and still records through ``Row.fill``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from joulie_tasks.adapters import store
from joulie_testbed.chaos import Driver, problems
from joulie_testbed.emulator import Emulator, faults
from joulie_testbed.procs import Proc, Stack
from joulie_testbed.ticks import TickClient
from tests.chaos.reliability import Row

#: One ``Emulator.inject`` rule: method, path regex and the rule's options.
Fault = tuple[str, str, faults.FaultOptions]


@dataclass(frozen=True)
class Scenario:
    """Where a row starts: ``nodes`` seeded nodes with ``pods_per_node`` pods (``seed``),
    ``settings`` given to every process, one worker named ``worker``; ``converged`` runs
    one tick first and forgets its outcome, so the row counts only the ticks after its
    fault."""

    seed: int
    nodes: int = 6
    pods_per_node: float = 1
    settings: Mapping[str, str] = field(default_factory=dict)
    converged: bool = False
    worker: str = "w1"


class Chaos:
    """A chaos test's real parts (the same objects as its ``stack``, ``emulator``,
    ``ticks``, ``state`` and ``reliability`` fixtures)."""

    def __init__(
        self,
        *,
        stack: Stack,
        emulator: Emulator,
        ticks: TickClient,
        state: store.RedisStore,
        row: Row,
    ) -> None:
        self.stack, self.emulator, self.ticks, self.state, self.row = (
            stack,
            emulator,
            ticks,
            state,
            row,
        )
        self._worker: Proc | None = None

    @property
    def worker(self) -> Proc:
        """The worker ``start`` started."""
        if self._worker is None:
            raise RuntimeError("no worker yet: call start() first")
        return self._worker

    def start(self, scenario: Scenario, *injected: Fault) -> Driver:
        """Configure, seed and start the worker (``self.worker``), converge if the
        scenario says so, then inject the ``injected`` faults; returns the row's tick driver."""
        if scenario.settings:
            self.stack.configure(**scenario.settings)
        self.emulator.seed(scenario.nodes, scenario.pods_per_node, seed=scenario.seed)
        self._worker = self.stack.start_worker(scenario.worker)
        drive = self.driver()
        if scenario.converged:
            drive.converge(max_ticks=1)
            drive.outcomes.clear()
        for method, path, options in injected:
            self.emulator.inject(method, path, **options)
        return drive

    def driver(self) -> Driver:
        """A tick driver for a row that starts its workers itself."""
        return Driver(self.ticks, self.state, self.emulator, self.stack.env)

    def problems(self) -> list[str]:
        """What Redis or the cluster lost or got wrong ([] when they agree)."""
        return problems(self.state, self.emulator, self.stack.env)
