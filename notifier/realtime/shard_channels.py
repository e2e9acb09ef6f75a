"""The shard channels of the realtime bus on a Redis Cluster, and who owns them.

- **User channels** ``{prefix}:rt:u:{<user>}``: the user id is the hash tag, so a user's
  channel lives on the primary owning that slot.
- **Fanout channels** ``{prefix}:rt:f:{<tag>}``, ``FANOUT_CHANNELS`` of them, the tags chosen
  so that channel *i* falls in the *i*-th equal range of slots: a primary serving a whole
  range (256 slots) owns at least one, whatever the layout; one with fewer or scattered
  slots may own none, and its users' events then go one by one. Every web process
  subscribes to all of them.

``messages_for`` decides what a batch of events becomes (no I/O; the bus sends it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from redis.asyncio.cluster import RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import SlotNotCoveredError

from notifier.errors import ConfigError
from notifier.realtime.redis_bus import SHARED_MIN, SharedEvent
from notifier.storage.redis_client import redis_client
from notifier.storage.redis_urls import parse_redis_url

#: Fanout channels: one per range of 16384 / 64 = 256 slots.
FANOUT_CHANNELS = 64


def _fanout_tags(count: int) -> list[str]:
    """For each of ``count`` equal ranges of slots, the first decimal hash tag in it."""
    span = REDIS_CLUSTER_HASH_SLOTS // count
    tags: list[str | None] = [None] * count
    n = 0
    while None in tags:
        tag = str(n)
        index = key_slot(tag.encode()) // span
        if index < count and tags[index] is None:
            tags[index] = tag
        n += 1
    return [tag for tag in tags if tag is not None]


_TAGS = _fanout_tags(FANOUT_CHANNELS)
_shared_encoder = msgspec.json.Encoder()
shared_decoder = msgspec.json.Decoder(SharedEvent)


class ShardChannels:
    """The realtime shard channels under one key prefix."""

    def __init__(self, key_prefix: str) -> None:
        self._user = f"{key_prefix}:rt:u:{{"
        self._user_bytes = self._user.encode()
        self.fanout = [f"{key_prefix}:rt:f:{{{tag}}}" for tag in _TAGS]
        """Every web process subscribes to all of these."""
        self.fanout_names = frozenset(self.fanout)
        self.fanout_bytes = frozenset(channel.encode() for channel in self.fanout)

    def user(self, user: str) -> str:
        """``user``'s channel: its id is the hash tag."""
        return f"{self._user}{user}}}"

    def user_of(self, channel: bytes) -> str | None:
        """The user whose channel ``channel`` is (None: not a user channel)."""
        if channel.startswith(self._user_bytes) and channel.endswith(b"}"):
            return channel[len(self._user_bytes) : -1].decode()
        return None


#: What goes where: by primary (None: no owner known), the (channel, message) pairs to SPUBLISH.
Sends = dict[str | None, list[tuple[str, bytes]]]


def messages_for(
    by_message: dict[bytes, list[str]],
    channels: ShardChannels,
    node_of: Callable[[str], str | None],
) -> Sends:
    """What to SPUBLISH where, for each message to its users, by primary: one
    ``SharedEvent`` per primary on a fanout channel it owns when at least ``SHARED_MIN`` of
    the users live there, else the message on each user's channel. ``node_of`` names the
    primary owning a channel's slot (None: unknown)."""
    fanout_of: dict[str, str] = {}
    for channel in reversed(channels.fanout):  # the first a node owns wins
        node = node_of(channel)
        if node is not None:
            fanout_of[node] = channel
    sends: Sends = {}
    for message, users in by_message.items():
        by_node: dict[str | None, list[tuple[str, str]]] = {}
        for user in users:
            channel = channels.user(user)
            by_node.setdefault(node_of(channel), []).append((user, channel))
        for node, here in by_node.items():
            fanout = fanout_of.get(node) if node is not None else None
            node_sends = sends.setdefault(node, [])
            if fanout is not None and len(here) >= SHARED_MIN:
                shared = SharedEvent([user for user, _ in here], msgspec.Raw(message))
                node_sends.append((fanout, _shared_encoder.encode(shared)))
            else:
                node_sends += [(channel, message) for _, channel in here]
    return sends


def cluster_client(url: str, **options: Any) -> RedisCluster:
    """``redis_client`` of a ``redis+cluster://`` URL (``ConfigError`` for another)."""
    client = redis_client(url, **options)
    if not isinstance(client, RedisCluster):
        raise ConfigError(f"{parse_redis_url(url).redacted()} is not a Redis Cluster")
    return client


def owners(client: RedisCluster) -> Callable[[str], str | None]:
    """The name of the primary owning a channel's slot, in ``client``'s slot map (None: no
    owner known)."""

    def owner(channel: str) -> str | None:
        try:
            node = client.get_node_from_key(channel)
        except SlotNotCoveredError:
            return None
        return node.name if node is not None else None

    return owner
