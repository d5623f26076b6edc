"""The deploy tests reuse the integration tier's fixtures (a private redis-server, the
real control plane for the manifests, the operator's store)."""

from tests.integration.conftest import (  # noqa: F401 (fixtures, found by name)
    cluster,
    cluster_stack,
    emulator,
    real_server,
    redis_server,
    stack,
    state,
    ticks,
)
