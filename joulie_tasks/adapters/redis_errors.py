"""How a Redis failure reaches the workflow: one ``StateStoreError`` (errors.py).

Both Redis adapters (store.py, cache_store.py) run every command inside
:func:`translated`, so a caller catches one exception type and never a library one,
and a failover is handled in one place: after it every idle pooled connection may
still point at the old master (now a replica, or gone), so they are all dropped at
once and the next command asks the Sentinels again, instead of failing once per
stale connection.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from joulie_tasks import errors


def redact_url(url: str) -> str:
    """The URL without its password, for logs and error lines."""
    return re.sub(r"(://[^:/@;]*:)[^@;]*@", r"\1***@", url)


@contextmanager
def translated(client: redis.Redis, *, url: str, failover: bool) -> Iterator[None]:
    """Run Redis commands of ``client`` (at ``url``): a ``RedisError`` becomes a
    ``StateStoreError`` naming the redacted URL; with ``failover`` (Sentinel) a lost
    connection or a read-only answer also drops the idle pooled connections.
    Usable as a decorator too."""
    try:
        yield
    except redis.RedisError as e:
        if failover and isinstance(e, redis.ConnectionError | redis.ReadOnlyError):
            client.connection_pool.disconnect(inuse_connections=False)
        raise errors.StateStoreError(f"Redis at {redact_url(url)}: {type(e).__name__}: {e}") from e
