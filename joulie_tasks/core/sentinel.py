"""The Sentinel form of ``REDIS_URL``: parsing and the URL handed to Celery.

kombu's convention (also celery's ``sentinel://`` result backend): one
``sentinel://`` URL per Sentinel, joined by ``;``, for example
``sentinel://:secret@s1:26379;sentinel://s2:26379;sentinel://s3:26379/0``, and the
master's name comes separately (``REDIS_SENTINEL_MASTER`` here, the
``master_name`` transport option there). The password and the database number
may be written on any one of the URLs; kombu reads them from the first URL and
celery's backend from the first host, so ``celery_url`` repeats them on every
URL and both read the same thing. The password authenticates to the Redis
master and replicas, not to the Sentinels.

Pure: no I/O, no ``redis`` import (config.py validates with it at start-up).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

SCHEME = "sentinel"
SEPARATOR = ";"
DEFAULT_PORT = 26379


@dataclass(frozen=True)
class SentinelUrl:
    """The Sentinels' addresses and what to use on the master they point at."""

    hosts: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = None


def is_sentinel_url(url: str) -> bool:
    return url.strip().lower().startswith(f"{SCHEME}://")


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Parse the ``;``-joined Sentinel URLs; ValueError says what was expected."""
    hosts: list[tuple[str, int]] = []
    dbs: set[int] = set()
    usernames: set[str] = set()
    passwords: set[str] = set()
    for chunk in url.strip().split(SEPARATOR):
        if not chunk:
            raise ValueError("expected sentinel://[:password@]host:port URLs joined by ';'")
        parts = urlsplit(chunk)
        if parts.scheme.lower() != SCHEME:
            raise ValueError(f"expected every ';'-joined URL to be sentinel://, not {chunk!r}")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ValueError("expected a port from 1 to 65535 on every sentinel:// URL") from None
        if not parts.hostname:
            raise ValueError("expected a host on every sentinel:// URL")
        hosts.append((parts.hostname, port))
        path = parts.path.strip("/")
        if path:
            if not path.isdigit():
                raise ValueError(f"expected a database number after the host, not {path!r}")
            dbs.add(int(path))
        if parts.username:
            usernames.add(unquote(parts.username))
        if parts.password is not None:
            passwords.add(unquote(parts.password))
    if len(dbs) > 1 or len(usernames) > 1 or len(passwords) > 1:
        raise ValueError("expected one database number and one password for all Sentinels")
    return SentinelUrl(
        hosts=tuple(hosts),
        db=next(iter(dbs), 0),
        username=next(iter(usernames), None),
        password=next(iter(passwords), None),
    )


def celery_url(parsed: SentinelUrl) -> str:
    """The broker / result-backend URL: every Sentinel URL carries auth and database."""
    auth = ""
    if parsed.username or parsed.password:
        auth = f"{quote(parsed.username or '', safe='')}:{quote(parsed.password or '', safe='')}@"
    return SEPARATOR.join(
        f"{SCHEME}://{auth}{_host(host)}:{port}/{parsed.db}" for host, port in parsed.hosts
    )


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def redact(url: str) -> str:
    """Any URL (or ``;``-joined URLs) without passwords, for logs and error lines."""
    return re.sub(r"(://[^:/@;]*:)[^@;]*@", r"\1***@", url)
