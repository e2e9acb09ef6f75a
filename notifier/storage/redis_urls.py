"""What a Redis URL names: one server, a Redis Cluster, or a Sentinel-managed primary.

One parser for every Redis notifier talks to (storage, the realtime bus, the fanout broker,
the shared limits), so each accepts the same forms and refuses a bad one with the same
message, at start:

- ``redis://[user:password@]host:port/db`` (``rediss://`` for TLS, ``unix:///path``): one
  server.
- ``redis+cluster://host:port[,host:port…]`` (``rediss+cluster://``): a Redis Cluster; the
  hosts are only where discovery starts (any reachable primary or replica will do). Cluster
  has no databases: a path other than ``/`` or ``/0`` is refused.
- ``redis+sentinel://host:port[,host:port…]/service_name[/db]`` (``rediss+sentinel://``):
  the primary that the Sentinels at those addresses name for ``service_name``, followed
  through failovers. A password in the URL is the data nodes'; Sentinels' own password, if
  they have one, comes from ``NOTIFIER_REDIS_SENTINEL_PASSWORD`` (docs/deployment.md).

Query parameters are refused, except on plain ``redis://`` URLs (which redis-py parses): an
unknown one would otherwise be ignored silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from urllib.parse import unquote, urlsplit

from notifier.errors import ConfigError

DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379


class Topology(Enum):
    SINGLE = "single"
    CLUSTER = "cluster"
    SENTINEL = "sentinel"


SCHEMES = {
    "redis": Topology.SINGLE,
    "rediss": Topology.SINGLE,
    "unix": Topology.SINGLE,
    "redis+cluster": Topology.CLUSTER,
    "rediss+cluster": Topology.CLUSTER,
    "redis+sentinel": Topology.SENTINEL,
    "rediss+sentinel": Topology.SENTINEL,
}


@dataclass(frozen=True)
class RedisTarget:
    """A parsed Redis URL."""

    url: str
    topology: Topology
    tls: bool
    hosts: tuple[tuple[str, int], ...] = ()
    """Cluster: discovery addresses. Sentinel: the Sentinels. Single: unused (redis-py
    parses ``url`` itself)."""
    service: str = ""
    """Sentinel: the monitored primary's name."""
    db: int = 0
    username: str | None = None
    password: str | None = None

    @property
    def single(self) -> bool:
        return self.topology is Topology.SINGLE

    @property
    def cluster(self) -> bool:
        return self.topology is Topology.CLUSTER

    @property
    def sentinel(self) -> bool:
        return self.topology is Topology.SENTINEL

    def redacted(self) -> str:
        """The URL without its password, for logs and error messages."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = f"{parts.username}:***@" if parts.username else ":***@"
        return parts._replace(netloc=user + netloc).geturl()


def is_redis_url(url: str) -> bool:
    return urlsplit(url).scheme in SCHEMES


def parse_redis_url(url: str, what: str = "redis url") -> RedisTarget:
    """``url`` as a ``RedisTarget``; ``ConfigError`` naming ``what`` if it is not one."""
    parts = urlsplit(url)
    topology = SCHEMES.get(parts.scheme)
    if topology is None:
        raise ConfigError(
            f"{what} {url!r} must start with one of " + ", ".join(f"{s}://" for s in SCHEMES)
        )
    tls = parts.scheme.startswith("rediss")
    if topology is Topology.SINGLE:
        return RedisTarget(url, topology, tls)
    if parts.query or parts.fragment:
        raise ConfigError(f"{what}: {parts.scheme}:// takes no query parameters")
    netloc = parts.netloc.rsplit("@", 1)[-1]
    default_port = DEFAULT_PORT if topology is Topology.CLUSTER else DEFAULT_SENTINEL_PORT
    hosts = tuple(_host(h, default_port, what) for h in netloc.split(",") if h.strip())
    if not hosts:
        raise ConfigError(f"{what}: {parts.scheme}:// needs at least one host:port")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    path = [p for p in parts.path.split("/") if p]
    if topology is Topology.CLUSTER:
        if path not in ([], ["0"]):
            raise ConfigError(f"{what}: a Redis Cluster has no databases (drop {parts.path!r})")
        return RedisTarget(url, topology, tls, hosts, username=username, password=password)
    if not path or len(path) > 2:
        raise ConfigError(
            f"{what}: redis+sentinel:// needs the primary's name: "
            "redis+sentinel://host:port[,host:port]/service_name[/db]"
        )
    db = _int(path[1], f"{what}: database") if len(path) == 2 else 0
    return RedisTarget(url, topology, tls, hosts, path[0], db, username, password)


def _host(text: str, default_port: int, what: str) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":")
    if not host:  # no port given
        return text.strip(), default_port
    return host.strip("[]"), _int(port, f"{what}: port of {text.strip()!r}")


def _int(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{what} must be a number, got {text!r}") from None
    if value < 0:
        raise ConfigError(f"{what} must not be negative")
    return value
