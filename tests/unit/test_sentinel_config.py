"""The Sentinel form of REDIS_URL (kombu's ``sentinel://…;sentinel://…`` convention) and
REDIS_SENTINEL_MASTER: parsed, normalised for Celery, one clear line when wrong."""

from __future__ import annotations

import pytest

from joulie_tasks import config, errors
from joulie_tasks.core import sentinel
from joulie_tasks.queue import celery_app

URL = "sentinel://:s3cret@s1:26379;sentinel://s2:26380;sentinel://s3/2"


def test_the_sentinel_form_is_parsed_into_hosts_password_and_database() -> None:
    parsed = sentinel.parse_sentinel_url(URL)
    assert parsed.hosts == (("s1", 26379), ("s2", 26380), ("s3", 26379))
    assert (parsed.password, parsed.db, parsed.username) == ("s3cret", 2, None)


def test_celery_gets_auth_and_database_on_every_sentinel_url() -> None:
    assert sentinel.celery_url(sentinel.parse_sentinel_url(URL)) == (
        "sentinel://:s3cret@s1:26379/2;sentinel://:s3cret@s2:26380/2;sentinel://:s3cret@s3:26379/2"
    )


def test_broker_and_result_backend_follow_the_master_by_name() -> None:
    s = config.read_settings({"REDIS_URL": URL, "REDIS_SENTINEL_MASTER": "joulie"})
    conf = celery_app.celery_config(s)
    assert conf["broker_url"] == conf["result_backend"]
    assert conf["broker_url"].startswith("sentinel://:s3cret@s1:26379/2;")
    assert conf["broker_transport_options"]["master_name"] == "joulie"
    assert conf["result_backend_transport_options"]["master_name"] == "joulie"


def test_single_redis_configuration_is_unchanged() -> None:
    s = config.read_settings({"REDIS_URL": "redis://r:6379/0"})
    conf = celery_app.celery_config(s)
    assert not s.uses_sentinel
    assert conf["broker_url"] == conf["result_backend"] == "redis://r:6379/0"
    assert "master_name" not in conf["broker_transport_options"]


BAD = [
    ("sentinel://s1:26379", None, "REDIS_SENTINEL_MASTER=None: expected the name"),
    (URL, " ", "REDIS_SENTINEL_MASTER=' ': expected the name"),
    ("redis://r:6379/0", "m", "REDIS_SENTINEL_MASTER='m': expected it unset"),
    ("sentinel://s1;redis://r", "m", "REDIS_URL='sentinel://s1;redis://r': expected every"),
    ("sentinel://s1:99999", "m", "port from 1 to 65535"),
    ("sentinel://:26379", "m", "expected a host"),
    ("sentinel://s1/zero", "m", "database number"),
    ("sentinel://s1;;sentinel://s2", "m", "joined by ';'"),
    ("sentinel://:a@s1/0;sentinel://:b@s2/0", "m", "one password"),
]


@pytest.mark.parametrize(("url", "master", "expected"), BAD, ids=[e for *_, e in BAD])
def test_a_bad_sentinel_configuration_gives_one_line(
    url: str, master: str | None, expected: str
) -> None:
    env = {"REDIS_URL": url} | ({} if master is None else {"REDIS_SENTINEL_MASTER": master})
    with pytest.raises(errors.ConfigError) as info:
        config.read_settings(env)
    assert len(info.value.lines) == 1
    assert expected in info.value.lines[0]


def test_the_error_line_never_shows_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        config.load_settings({"REDIS_URL": "sentinel://:hunter2@s1:1;sentinel://s2:x"})
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("joulie-tasks: invalid configuration: REDIS_URL='sentinel://:***@s1")
    assert "hunter2" not in err[0]
