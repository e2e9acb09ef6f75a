"""Configuration: feed groups, verbs and limits, read once at start from TOML and the environment.

Precedence: built-in defaults, then the TOML file (``NOTIFIER_CONFIG`` or ``--config``), then
environment variables for deployment settings (``NOTIFIER_STORAGE_URL``,
``NOTIFIER_KEY_PREFIX``). The result is one immutable ``Config`` passed down explicitly.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from notifier.categories import Categories
from notifier.delivery.settings import DeliverySettings
from notifier.errors import ConfigError
from notifier.fanout.settings import FanoutSettings
from notifier.feedgroups import FeedGroups, default_groups, group_from_mapping
from notifier.model import Limits, Verb, VerbRegistry
from notifier.storage.redis_client import POOL_SIZE, POOL_TIMEOUT
from notifier.storage.redis_urls import SCHEMES as REDIS_SCHEMES
from notifier.storage.redis_urls import parse_redis_url

STORAGE_SCHEMES = ("memory", "cassandra", *REDIS_SCHEMES)


@dataclass(frozen=True)
class Config:
    """Everything notifier's core needs to know, validated."""

    feeds: FeedGroups = field(default_factory=lambda: FeedGroups.of(default_groups()))
    verbs: VerbRegistry = field(default_factory=VerbRegistry)
    categories: Categories = field(default_factory=Categories)
    """Notification categories (``[categories]``): verb defaults and which are critical."""
    limits: Limits = field(default_factory=Limits)
    storage_url: str = "memory://"
    key_prefix: str = "notifier"
    pool_size: int = POOL_SIZE
    """Redis storage: connections per process (``[storage] pool_size``)."""
    pool_timeout: float = POOL_TIMEOUT
    """Redis storage: seconds a command waits for a free connection before ``Busy`` (503)."""
    fanout: FanoutSettings = field(default_factory=FanoutSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    """Escalation to webhooks and email digests (``[delivery]``; notifier.delivery)."""
    server: Mapping[str, Any] = field(default_factory=dict)
    """The raw ``[server]`` table; ``notifier.web.settings.ServerSettings`` validates it."""

    def __post_init__(self) -> None:
        scheme = urlsplit(self.storage_url).scheme
        if scheme not in STORAGE_SCHEMES:
            raise ConfigError(
                f"storage url {self.storage_url!r} must start with one of "
                + ", ".join(f"{s}://" for s in STORAGE_SCHEMES)
            )
        if scheme in REDIS_SCHEMES:
            parse_redis_url(self.storage_url, "storage url (NOTIFIER_STORAGE_URL)")
        if not self.key_prefix or any(c in self.key_prefix for c in "{} "):
            raise ConfigError("key prefix must be non-empty without spaces or braces")
        if not 1 <= self.pool_size <= 10_000:
            raise ConfigError("storage.pool_size (NOTIFIER_STORAGE_POOL_SIZE) must be 1-10000")
        if not 0 < self.pool_timeout <= 600:
            raise ConfigError(
                "storage.pool_timeout (NOTIFIER_STORAGE_POOL_TIMEOUT) must be 0-600 seconds"
            )

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
        """Build from a parsed TOML document, then apply environment overrides."""
        env = os.environ if env is None else env
        unknown = set(raw) - {
            "feeds",
            "verbs",
            "categories",
            "limits",
            "storage",
            "fanout",
            "delivery",
            "server",
        }
        if unknown:
            raise ConfigError(f"unknown configuration section(s): {', '.join(sorted(unknown))}")
        storage = dict(raw.get("storage", {}))
        unknown = set(storage) - {"url", "prefix", "actor_feed", "pool_size", "pool_timeout"}
        if unknown:
            raise ConfigError(f"storage: unknown setting(s) {', '.join(sorted(unknown))}")
        actor_feed = storage.get("actor_feed", "user")
        if "feeds" in raw:
            groups = [group_from_mapping(n, t) for n, t in raw["feeds"].items()]
        else:
            groups = default_groups()
        verbs = VerbRegistry()
        for name, past in raw.get("verbs", {}).items():
            if not isinstance(past, str):
                raise ConfigError(f"verbs.{name} must be the past tense as a string")
            verbs.register(Verb(name, past))
        categories = Categories.from_mapping(raw.get("categories", {}))
        for category in categories:
            for verb in category.verbs:
                if verb not in verbs:
                    raise ConfigError(f"categories.{category.name}.verbs: unknown verb {verb!r}")
        try:
            limits = msgspec.convert(raw.get("limits", {}), Limits)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"limits: {exc}") from None
        return cls(
            feeds=FeedGroups.of(groups, actor_feed),
            verbs=verbs,
            categories=categories,
            limits=limits,
            storage_url=env.get("NOTIFIER_STORAGE_URL", storage.get("url", "memory://")),
            key_prefix=env.get("NOTIFIER_KEY_PREFIX", storage.get("prefix", "notifier")),
            pool_size=_number(
                env.get("NOTIFIER_STORAGE_POOL_SIZE", storage.get("pool_size", POOL_SIZE)),
                int,
                "storage.pool_size (NOTIFIER_STORAGE_POOL_SIZE)",
            ),
            pool_timeout=_number(
                env.get("NOTIFIER_STORAGE_POOL_TIMEOUT", storage.get("pool_timeout", POOL_TIMEOUT)),
                float,
                "storage.pool_timeout (NOTIFIER_STORAGE_POOL_TIMEOUT)",
            ),
            fanout=FanoutSettings.from_mapping(raw.get("fanout", {}), env),
            delivery=DeliverySettings.from_mapping(raw.get("delivery", {}), env, categories),
            server=dict(raw.get("server", {})),
        )

    @classmethod
    def load(cls, path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
        """Read ``path`` (or ``$NOTIFIER_CONFIG``) if any, with environment overrides."""
        env = os.environ if env is None else env
        path = path or env.get("NOTIFIER_CONFIG")
        raw: dict[str, Any] = {}
        if path:
            try:
                raw = tomllib.loads(Path(path).read_text())
            except OSError as exc:
                raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        return cls.from_mapping(raw, env)


def _number(value: Any, kind: type[int] | type[float], name: str) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
