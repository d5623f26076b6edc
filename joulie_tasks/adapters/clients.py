"""The wiring root: the one place a process builds its clients from the Settings.

Every entry point — the worker's tasks, beat, ``watch``, ``metrics`` and each CLI
command (``reconcile``, ``status``, ``history``, ``plan``, ``pause``, ``resume``) —
gets its Redis store (the ``StateStore`` ports, its metrics sink among them), its
Kubernetes gateway, the watch cache on the same Redis connection (``TickCache`` for a
tick's runner, ``WatchCache`` for the watcher) and the Celery broker connection from
here, and no other module calls ``RedisStore(``, ``CacheStore(`` or ``build_gateway(``
(tests/unit/adapters/test_clients.py checks the source). The workflow never imports
this module (an import-linter contract): the entry points hand it what is built here. Why:
the same wiring written out seven times had one copy that forgot the Sentinel
master name, and ``watch`` crashed at start with a ``sentinel://`` REDIS_URL
(issue 16). Here a Sentinel URL can only be wired together with its master.

It sits beside the adapters because it knows all of them; they stay
independent of each other (pyproject.toml's import-linter contracts). It opens no
connection itself: redis-py and the official client connect on first use.
"""

from __future__ import annotations

from typing import Any

from joulie_tasks import config
from joulie_tasks.adapters import cache_store, kube, store
from joulie_tasks.core import sentinel


def redis_store(settings: config.Settings) -> store.RedisStore:
    """The operator's Redis state: plain Redis, or the master the Sentinels name now
    (REDIS_SENTINEL_MASTER) with the replica acknowledgement that mode requires."""
    master = settings.redis_sentinel_master if settings.uses_sentinel else None
    return store.RedisStore(settings.redis_url, sentinel_master=master)


def gateway(settings: config.Settings, *, pool_size: int | None = None) -> kube.ApiGateway:
    """A Kubernetes gateway for this process (``pool_size`` overrides KUBE_POOL_SIZE:
    the watcher holds three long watches open beside its lists)."""
    return kube.build_gateway(
        kubeconfig=settings.kubeconfig,
        context=settings.kube_context,
        timeout=settings.kube_request_timeout,
        pool_size=settings.kube_pool_size if pool_size is None else pool_size,
    )


def cache(state: store.RedisStore) -> cache_store.CacheStore:
    """The watch-fed cache, on the same Redis (and so the same master) as ``state``."""
    return cache_store.CacheStore(state.client, url=state.url, failover=state.uses_sentinel)


def broker(settings: config.Settings) -> tuple[str, dict[str, Any]]:
    """Celery's broker and result-backend URL and the transport options they share.

    With Sentinel the URL names every Sentinel (auth and database on each, see
    core/sentinel.py) and ``master_name`` makes kombu ask them for the master on each
    (re)connection, so the broker, the results and beat's ticks follow a failover.
    """
    options: dict[str, Any] = {}
    if not settings.uses_sentinel:
        return settings.redis_url, options
    options["master_name"] = settings.redis_sentinel_master
    return sentinel.celery_url(sentinel.parse_sentinel_url(settings.redis_url)), options
