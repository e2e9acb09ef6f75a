"""Configuration from TOML and the environment, with one clear error per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier.config import Config
from notifier.errors import ConfigError
from notifier.feedgroups import FeedKind

EXAMPLE = """
[storage]
url = "redis://localhost:6379/0"
prefix = "app"

[limits]
max_extra_bytes = 1024

[verbs]
wave = "waved at"

[feeds.user]
kind = "flat"
max_length = 500

[feeds.inbox]
kind = "notification"
rule = "{{ verb }}:{{ object }}"
max_activities = 5
merge_window = 3
max_length = 50
"""


def test_toml_file_builds_groups_verbs_and_limits(tmp_path: Path) -> None:
    path = tmp_path / "notifier.toml"
    path.write_text(EXAMPLE)
    config = Config.load(path, env={})
    inbox = config.feeds["inbox"]
    assert inbox.kind is FeedKind.NOTIFICATION
    assert (inbox.max_activities, inbox.merge_window, inbox.max_length) == (5, 3, 50)
    assert inbox.rule is not None and inbox.rule.source == "{{ verb }}:{{ object }}"
    assert config.feeds["user"].max_length == 500
    assert config.verbs.get("wave").past_tense == "waved at"
    assert "like" in config.verbs  # defaults stay
    assert config.limits.max_extra_bytes == 1024
    assert (config.storage_url, config.key_prefix) == ("redis://localhost:6379/0", "app")


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "n.toml"
    path.write_text(EXAMPLE)
    env = {"NOTIFIER_STORAGE_URL": "memory://", "NOTIFIER_KEY_PREFIX": "x"}
    config = Config.load(path, env=env)
    assert (config.storage_url, config.key_prefix) == ("memory://", "x")


def test_defaults_have_user_timeline_and_notification() -> None:
    config = Config.load(None, env={})
    assert [g.name for g in config.feeds] == ["user", "timeline", "notification"]
    assert [g.name for g in config.feeds.fanout_groups] == ["timeline"]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[feeds.user]\nkind='flat'\n[feeds.x]\nkind='weird'", "feeds.x.kind"),
        ("[feeds.user]\nkind='flat'\nmax_length=0", "feeds.user.max_length"),
        ("[feeds.user]\nkind='flat'\ncolour='red'", "unknown setting"),
        ("[feeds.x]\nkind='flat'", "actor feed group 'user'"),
        ("[feeds.user]\nkind='notification'", "must be flat"),
        (
            "[feeds.user]\nkind='flat'\n[feeds.n]\nkind='aggregated'\nrule='{{ verb.__class__ }}'",
            "private attributes",
        ),
        ("[limits]\nmax_to='many'", "limits"),
        ("[storage]\nurl='mysql://x'", "storage url"),
        ("[nonsense]\na=1", "unknown configuration section"),
        ("[verbs]\nwave=3", "verbs.wave"),
    ],
)
def test_mistakes_give_one_clear_error(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        Config.load(path, env={})


def test_unreadable_or_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        Config.load(tmp_path / "missing.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[feeds")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.load(bad, env={})


def test_the_storage_pool_comes_from_the_file_or_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "n.toml"
    path.write_text('[storage]\nurl = "redis://h:6379/0"\npool_size = 7\npool_timeout = 0.5\n')
    config = Config.load(path, env={})
    assert (config.pool_size, config.pool_timeout) == (7, 0.5)
    env = {"NOTIFIER_STORAGE_POOL_SIZE": "200", "NOTIFIER_STORAGE_POOL_TIMEOUT": "2"}
    config = Config.load(path, env=env)
    assert (config.pool_size, config.pool_timeout) == (200, 2.0)
    with pytest.raises(ConfigError, match="NOTIFIER_STORAGE_POOL_SIZE"):
        Config.load(path, env={"NOTIFIER_STORAGE_POOL_SIZE": "0"})
    with pytest.raises(ConfigError, match="NOTIFIER_STORAGE_POOL_TIMEOUT"):
        Config.load(path, env={"NOTIFIER_STORAGE_POOL_TIMEOUT": "soon"})
