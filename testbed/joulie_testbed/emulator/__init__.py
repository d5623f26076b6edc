"""A Kubernetes API emulator: the test bed for joulie-tasks' kube adapter and workflow.

No cluster runs where the tests run, so this serves the slice of the Kubernetes REST
API the operator uses (nodes, pods, events, leases, CRDs, NodePowerProfiles) over
real HTTP to the official client, with resourceVersion conflicts, CRD validation,
patches, pagination and selectors, plus test controls: fault injection, latency,
request counters, out-of-band writes and generated clusters. Test-only: nothing in
the operator's runtime imports it.

Modules: app (Emulator), api (REST semantics), store (objects), server (HTTP),
control (``/_emulator`` endpoints and RemoteEmulator), faults, seed, validation,
selection, patching, resources, conversion.
"""

from joulie_testbed.emulator.app import ConcurrentWriter, Emulator
from joulie_testbed.emulator.control import RemoteEmulator

__all__ = ["ConcurrentWriter", "Emulator", "RemoteEmulator"]
