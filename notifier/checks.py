"""What a deployment's backends must be for notifier to keep what it acknowledged, checked.

Redis holds the feeds (Redis storage) and the queued fanout jobs (the broker). A Redis that
evicts keys when it is full drops feeds and jobs without an error anyone sees, and one without
persistence loses all of them on a restart. Neither shows in a test that never fills Redis or
restarts it, so the web and worker processes say so at start (a WARNING line per problem) and
``notifier check`` reports it, with the storage, the broker and the configuration, in plain
words (docs/storage.md, "What notifier needs from Redis").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis

from notifier.errors import ConfigError
from notifier.storage.redis_client import redis_client, server_client

if TYPE_CHECKING:
    from notifier.config import Config

log = logging.getLogger(__name__)

Severity = Literal["ok", "warning", "error"]


@dataclass(frozen=True)
class Finding:
    """One thing found: ``error`` loses data or stops notifier, ``warning`` may lose some."""

    severity: Severity
    subject: str
    """What it is about: ``storage``, ``broker``, ``configuration``…"""
    message: str

    def line(self) -> str:
        return f"{self.severity.upper():7} {self.subject}: {self.message}"


async def redis_findings(client: aioredis.Redis, roles: Sequence[str]) -> list[Finding]:
    """What is wrong with a Redis that holds ``roles`` (``storage``, ``broker``) for data it
    must keep: eviction, persistence. Reads ``INFO`` (allowed on managed Redis services that
    disable ``CONFIG``) and, where it is allowed, ``CONFIG GET save``."""
    subject = " and ".join(roles)
    what = {"storage": "feeds", "broker": "queued fanout jobs"}
    kept = " and ".join(what[r] for r in roles if r in what) or "data"
    info: dict[str, Any] = await client.info()
    found: list[Finding] = []
    policy = str(info.get("maxmemory_policy", "noeviction"))
    if policy != "noeviction":
        found.append(Finding(
            "error", subject,
            f"Redis evicts keys when it is full (maxmemory-policy {policy}): {kept} would "
            "vanish without an error. Set maxmemory-policy noeviction (writes then fail "
            "loudly when Redis is full, and are retried).",
        ))  # fmt: skip
    if int(info.get("aof_enabled", 0)) == 1:
        fsync = await _config(client, "appendfsync")
        if fsync == "no":
            found.append(Finding(
                "warning", subject,
                "append-only file without fsync (appendfsync no): a crash of the machine "
                f"loses the {kept} the OS had not written yet. appendfsync everysec is "
                "recommended.",
            ))  # fmt: skip
        return found
    save = await _config(client, "save")
    if save is None:
        found.append(Finding(
            "warning", subject,
            "append-only file off, and this Redis does not say whether it takes RDB "
            f"snapshots (CONFIG is not allowed): a restart may lose {kept}. Turn on "
            "appendonly yes.",
        ))  # fmt: skip
    elif not save.strip():
        found.append(Finding(
            "error", subject,
            f"no persistence (appendonly no, no RDB snapshots): a restart loses every one "
            f"of the {kept}. Turn on appendonly yes (appendfsync everysec).",
        ))  # fmt: skip
    else:
        found.append(Finding(
            "warning", subject,
            f"RDB snapshots only (save {save!r}): a restart loses the {kept} written since "
            "the last snapshot. appendonly yes (appendfsync everysec) loses at most a "
            "second.",
        ))  # fmt: skip
    return found


async def _config(client: aioredis.Redis, name: str) -> str | None:
    """``CONFIG GET name``, or None where CONFIG is not allowed."""
    try:
        value: dict[Any, Any] = await client.config_get(name)
    except redis.ResponseError:
        return None
    raw = value.get(name, value.get(name.encode()))
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def log_findings(findings: Sequence[Finding]) -> None:
    """At a process's start: one WARNING line per problem (start-up goes on)."""
    for finding in findings:
        if finding.severity != "ok":
            log.warning("backend check (%s) %s: %s", finding.severity, finding.subject,
                        finding.message)  # fmt: skip


async def backend_findings(config: Config) -> list[Finding]:
    """The Redis servers that keep notifier's data (storage, broker), each checked once."""
    from notifier.fanout.broker import IN_PROCESS, broker_url_for

    roles: dict[str, list[str]] = {}
    # A cluster's nodes are each checked by its operator's tooling (redis-cli --cluster
    # check); one server, or a Sentinel-managed primary, here.
    if urlsplit(config.storage_url).scheme in ("redis", "rediss", "redis+sentinel"):
        roles.setdefault(config.storage_url, []).append("storage")
    try:
        broker = broker_url_for(config)
    except ConfigError:
        broker = IN_PROCESS  # reported by the configuration check
    if broker != IN_PROCESS:
        roles.setdefault(broker, []).append("broker")
    found: list[Finding] = []
    for url, held in roles.items():
        client = server_client(url, pool_size=2)
        try:
            found += await redis_findings(client, held)
        except (redis.RedisError, OSError) as exc:
            found.append(Finding("error", " and ".join(held),
                                 f"cannot reach Redis at {_safe(url)}: {exc}"))  # fmt: skip
        finally:
            await client.aclose()
    return found


async def deployment_findings(config_path: str | None, env: Mapping[str, str]) -> list[Finding]:
    """What ``notifier check`` reports: the configuration, then every backend it names."""
    from notifier.config import Config
    from notifier.fanout.broker import IN_PROCESS, broker_url_for
    from notifier.realtime.wiring import realtime_url_for
    from notifier.storage.factory import storage_for
    from notifier.web.settings import ServerSettings

    try:
        config = Config.load(config_path, env=env)
    except ConfigError as exc:
        return [Finding("error", "configuration", str(exc))]
    found: list[Finding] = [Finding("ok", "configuration", "the TOML file and variables load")]
    try:
        ServerSettings.load(config.server, env=env)
    except ConfigError as exc:
        found.append(Finding("error", "configuration", f"notifier serve would refuse: {exc}"))
    try:
        broker = broker_url_for(config)
        realtime = realtime_url_for(config, env)
    except ConfigError as exc:
        found.append(Finding("error", "configuration", str(exc)))
        return found
    storage = storage_for(config)
    try:
        await storage.ping()
        found.append(Finding("ok", "storage", f"{_safe(config.storage_url)} answers"))
    except Exception as exc:  # any failure is the finding itself
        found.append(Finding("error", "storage", f"{_safe(config.storage_url)}: {exc!r}"))
    finally:
        await storage.close()
    if urlsplit(config.storage_url).scheme == "memory":
        found.append(Finding(
            "warning", "storage",
            "memory storage: one process, and everything is lost when it stops (for demos "
            "and tests; use redis:// or cassandra:// in production)",
        ))  # fmt: skip
    found += await backend_findings(config)
    for name, url in (("broker", broker), ("realtime", realtime)):
        if url == IN_PROCESS:
            continue
        client = redis_client(url, pool_size=1)
        try:
            await client.ping()
            found.append(Finding("ok", name, f"{_safe(url)} answers"))
        except (redis.RedisError, OSError) as exc:
            found.append(Finding("error", name, f"cannot reach {_safe(url)}: {exc}"))
        finally:
            await client.aclose()
    return found


def _safe(url: str) -> str:
    """``url`` without a password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}:***@" if parts.username else "***@"
    return parts._replace(netloc=f"{user}{host}{port}").geturl()
