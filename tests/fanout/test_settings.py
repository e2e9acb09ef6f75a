"""The [fanout] section, NOTIFIER_BROKER_URL, and which broker a configuration implies."""

from __future__ import annotations

import pytest

from notifier.config import Config
from notifier.errors import ConfigError
from notifier.fanout.broker import IN_PROCESS, broker_url_for
from notifier.fanout.settings import FanoutSettings


def test_defaults_follow_the_issue() -> None:
    settings = Config().fanout
    assert settings == FanoutSettings()
    assert (settings.chunk_size, settings.backfill_default, settings.backfill_max) == (
        500,
        100,
        1000,
    )
    assert settings.broker_url is None


def test_the_fanout_table_is_read_and_the_environment_wins() -> None:
    raw = {"fanout": {"chunk_size": 50, "broker_url": "redis://file:6379/1"}}
    config = Config.from_mapping(raw, env={"NOTIFIER_BROKER_URL": "redis://env:6379/2"})
    assert config.fanout.chunk_size == 50
    assert config.fanout.broker_url == "redis://env:6379/2"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"chunk_sise": 10}, "unknown field `chunk_sise`"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"backfill_default": 2000}, "backfill_default must not exceed backfill_max"),
        ({"high_queue": "same", "low_queue": "same"}, "must differ"),
        ({"high_queue": "no spaces"}, "high_queue"),
        ({"broker_url": "amqp://x"}, "must start with one of redis://"),
        ({"heartbeat_timeout_ms": 3000}, "sweep_interval_ms must be at most half"),
    ],
)
def test_bad_settings_are_refused_with_the_key_named(
    table: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match="fanout") as error:
        Config.from_mapping({"fanout": table}, env={})
    assert message in str(error.value)


def test_the_broker_follows_the_storage_unless_told_otherwise() -> None:
    assert broker_url_for(Config()) == IN_PROCESS
    redis = Config(storage_url="redis://db:6379/0")
    assert broker_url_for(redis) == "redis://db:6379/0"
    other = Config.from_mapping(
        {"storage": {"url": "redis://db:6379/0"}}, env={"NOTIFIER_BROKER_URL": "redis://q:6379/0"}
    )
    assert broker_url_for(other) == "redis://q:6379/0"
    with pytest.raises(ConfigError, match="in-process broker"):
        broker_url_for(Config.from_mapping({}, env={"NOTIFIER_BROKER_URL": "redis://q:6379/0"}))
    with pytest.raises(ConfigError, match="NOTIFIER_BROKER_URL"):
        broker_url_for(Config(storage_url="cassandra://node/ks"))
