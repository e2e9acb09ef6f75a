"""The Redis backend: sorted sets and hashes, one Lua call per feed, one pipeline per batch.

Key layout (``P`` is the configured prefix; ``{…}`` is a Redis Cluster hash tag, so all keys
of one feed live in one slot and a script may touch them together):

- ``P:a:<id>``           string: an activity body (JSON), written once
- ``P:fid:<foreign_id>`` set: ids of activities carrying that foreign id
- ``P:f:{<group>:<user>}``  zset, all scores 0: a flat feed's ids in lexical (= time) order
- ``P:g:{<group>:<user>}:…`` an aggregated feed: see ``redis_scripts/common.lua``
- ``P:fr:<user>`` / ``P:fg:<user>``  zsets, lexical: followers / following
- ``P:fk:<user>``  zset, lexical: users who unfollowed ``user`` keeping its activities
- ``P:pr:<user>``  string: a user's notification preferences (see ``redis_preferences``)

Ids are members with score 0 and ordered lexically, never float scores: cursors are exact and
two ids never tie (Stream Framework's float scores skipped items sharing a millisecond).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from notifier.feedgroups import FeedGroup, FeedKind
from notifier.model import Activity, decode_activity, encode_activity
from notifier.preferences import Preferences
from notifier.storage.annotations import RedisAnnotations, decode_notes
from notifier.storage.base import Annotation, Counts, Entry, FeedChange, Marks, StoredGroup
from notifier.storage.redis_client import POOL_SIZE, POOL_TIMEOUT, AnyRedis, redis_client
from notifier.storage.redis_preferences import RedisPreferences

#: The first line of every feed script. On a Redis Cluster the feeds of a call may then be
#: keys of many slots of one node (Redis >= 7.0), given undeclared: see feeds.lua.
CROSS_SLOT = "#!lua flags=allow-cross-slot-keys\n"
#: The key of a feed, after its base key, that feeds.lua asks about before a call writes
#: anything. A flat feed is one key: if the node has it, the call may change it. An aggregated
#: feed is many keys, and a write may create new ones (a new group's): the probe is a key that
#: never exists, which a node answers for only when it serves the slot and the slot is not
#: moving away (absent keys of a migrating slot are redirected), so no write lands on a feed
#: whose keys are split between two nodes, or creates one there.
_FLAT_KEYS = ("",)
_AGGREGATED_KEYS = ("~",)


def _script(name: str, *, aggregated: bool, probe: bool = True, reads: bool = False) -> str:
    """A feed script: the flag line, the feeds prelude, the shared helpers of aggregated
    feeds, then the script's own body. ``probe=False``: the script checks its feeds itself
    (flat_add, the hot path, whose first write to a feed is its probe). ``reads``: declared
    ``no-writes``, so Redis refuses it any write, and a client that waits for replicas after
    writes (``NOTIFIER_REDIS_MIN_REPLICAS``) knows it need not wait after it."""
    folder = resources.files("notifier.storage").joinpath("redis_scripts")
    suffixes = () if not probe else _AGGREGATED_KEYS if aggregated else _FLAT_KEYS
    parts = [
        (CROSS_SLOT.replace("\n", ",no-writes\n") if reads else CROSS_SLOT)
        + "local SUFFIXES = {"
        + ", ".join(f"'{x}'" for x in suffixes)
        + "}",
        folder.joinpath("feeds.lua").read_text(),
        folder.joinpath("common.lua").read_text() if aggregated else "",
        folder.joinpath(f"{name}.lua").read_text(),
    ]
    return "\n".join(parts)


#: Feeds one flat-add script call writes. Batched keys make one call do a whole fanout chunk
#: (on a cluster, one call per node: see ``RedisStorage._batched``).
_FEEDS_PER_CALL = 500
_AGGREGATED_PER_CALL = 100


#: Seconds a cluster call refused by its node (its slot moving, a failover) is retried.
_REDO_FOR = 30.0
_REDIRECTED = (AskError, MovedError, TryAgainError, NoScriptError, ClusterDownError,
               RedisConnectionError, RedisTimeoutError)  # fmt: skip


def _refused(error: Exception) -> bool:
    """Whether a cluster node refused a call before running it (or while checking its
    feeds, before any write): the slot is elsewhere or moving, the node lost its scripts or
    is down. Anything else is a real error."""
    if isinstance(error, _REDIRECTED):
        return True
    text = str(error)
    return "non local key" in text or "TRYAGAIN" in text or "CLUSTERDOWN" in text


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _flag(value: bool | None) -> str:
    return "-" if value is None else "1" if value else "0"


class RedisStorage(RedisAnnotations):
    """Storage on one Redis server (or a Sentinel-managed primary); see the module docstring."""

    flat_feeds_exact = True  # every write trims in one script

    def __init__(self, client: AnyRedis, prefix: str = "notifier", url: str = "") -> None:
        self.client = client
        self.prefix = prefix
        self.url = url
        """The URL it was opened from (empty when given a client)."""
        self.cluster = isinstance(client, RedisCluster)
        self._loaded: set[str] = set()
        """Cluster: scripts loaded on every primary (see ``_cluster_batched``)."""
        self.redone = 0
        """Cluster: times some feeds of a call were refused by their node and sent again."""
        self._flat_add = self._register("flat_add", aggregated=False, probe=False)
        self._flat_remove = self._register("flat_remove", aggregated=False)
        self._agg_add = self._register("aggregated_add", aggregated=True)
        self._agg_remove = self._register("aggregated_remove", aggregated=True)
        self._agg_mark = self._register("aggregated_mark", aggregated=True)
        self._agg_read = self._register("aggregated_read", aggregated=True, reads=True)
        self._agg_migrate = self._register("aggregated_migrate", aggregated=True)
        self._preferences = RedisPreferences(client, prefix)

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str = "notifier",
        *,
        pool_size: int = POOL_SIZE,
        pool_timeout: float = POOL_TIMEOUT,
    ) -> RedisStorage:
        """Connect lazily to ``redis://host:port/db`` (``rediss://`` for TLS), through a pool
        of ``pool_size`` connections that a command waits ``pool_timeout`` seconds for."""
        client = redis_client(url, pool_size=pool_size, pool_timeout=pool_timeout, replicated=True)
        return cls(client, prefix, url)

    def _register(
        self, name: str, *, aggregated: bool, probe: bool = True, reads: bool = False
    ) -> AsyncScript:
        script = _script(name, aggregated=aggregated, probe=probe, reads=reads)
        return self.client.register_script(script)

    async def _one(self, script: AsyncScript, key: str, args: Sequence[Any]) -> Any:
        """``script`` on one feed."""
        if not self.cluster:
            return await script(keys=[key], args=args)
        return (await self._cluster_batched(script, [""], [key], args, 1))[0][1]

    # -- script calls over many feeds ------------------------------------------------------
    async def _batched(
        self,
        script: AsyncScript,
        users: Sequence[str],
        keys: Sequence[str],
        args: Sequence[Any],
        per_call: int,
        refused: Callable[[Any], Sequence[int]] | None = None,
    ) -> list[tuple[list[str], Any]]:
        """``script`` over the feeds ``keys`` (of ``users``), ``per_call`` feeds a call, in
        one pipelined round trip: each call's users and reply.

        On one server the calls take the feeds in order, declared as keys. On a Redis
        Cluster: ``_cluster_batched``, where ``refused`` names the positions (1-based) of the
        feeds a script left untouched because the node does not serve them (flat_add checks
        its feeds itself); the caller skips those in the reply, and they come back in a call
        of their own.
        """
        if not self.cluster:
            batches = [
                (list(users[i : i + per_call]), list(keys[i : i + per_call]))
                for i in range(0, len(users), per_call)
            ]
            async with self.client.pipeline(transaction=False) as pipe:
                for _, batch_keys in batches:
                    await script(keys=batch_keys, args=args, client=pipe)  # type: ignore[arg-type]
                replies = await pipe.execute()
            return [(u, r) for (u, _), r in zip(batches, replies, strict=True)]
        return await self._cluster_batched(script, users, keys, args, per_call, refused)

    async def _cluster_batched(
        self,
        script: AsyncScript,
        users: Sequence[str],
        keys: Sequence[str],
        args: Sequence[Any],
        per_call: int,
        refused: Callable[[Any], Sequence[int]] | None = None,
    ) -> list[tuple[list[str], Any]]:
        """``_batched`` on a Redis Cluster: the feeds grouped by the node serving each one's
        slot, each node's calls in one round trip (all nodes at once), the feeds undeclared
        (feeds.lua). A call a node refuses (a feed's slot moved or is moving; a node that
        lost the script or is failing over) changed nothing; its feeds are grouped again on
        a fresh slot map and sent again, until ``_REDO_FOR`` seconds have passed."""
        client = self.client
        assert isinstance(client, RedisCluster)
        await client.initialize()  # the slot map (a no-op once known)
        done: list[tuple[list[str], Any]] = []
        todo = list(zip(users, keys, strict=True))
        deadline = time.monotonic() + _REDO_FOR
        delay = 0.01
        while True:
            if script.sha not in self._loaded:
                await client.script_load(script.script)  # on every primary
                self._loaded.add(script.sha)
            calls = self._node_calls(client, todo, per_call)
            pipe = client.pipeline(transaction=False)
            for node, call in calls:
                call_keys = [key for _, key in call]
                pipe.execute_command("EVALSHA", script.sha, 0, len(call_keys), *call_keys, *args,
                                     target_nodes=node)  # fmt: skip
            # Not redis-py's redirection: it would resend a call of undeclared keys anywhere.
            replies = await pipe.execute(raise_on_error=False, allow_redirections=False)
            todo = []
            failure: Exception | None = None
            for (_, call), reply in zip(calls, replies, strict=True):
                if not isinstance(reply, Exception):
                    done.append(([user for user, _ in call], reply))
                    elsewhere = refused(reply) if refused is not None else ()
                    if elsewhere:
                        todo += [call[k - 1] for k in elsewhere]
                        failure = TryAgainError(f"{len(elsewhere)} feeds' slots moving")
                elif _refused(reply):
                    todo += call
                    failure = reply
                else:
                    raise reply
            if not todo:
                return done
            assert failure is not None
            self.redone += 1
            if isinstance(failure, NoScriptError):
                self._loaded.discard(script.sha)
            if time.monotonic() > deadline:
                raise failure
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
            await client.nodes_manager.initialize()  # a fresh slot map

    @staticmethod
    def _node_calls(
        client: RedisCluster, feeds: list[tuple[str, str]], per_call: int
    ) -> list[tuple[Any, list[tuple[str, str]]]]:
        """``feeds`` (user, key) grouped by the node serving each key, ``per_call`` a call."""
        by_node: dict[str, tuple[Any, list[tuple[str, str]]]] = {}
        for user, key in feeds:
            node = client.nodes_manager.get_node_from_slot(key_slot(key.encode()))
            by_node.setdefault(node.name, (node, []))[1].append((user, key))
        return [
            (node, node_feeds[i : i + per_call])
            for node, node_feeds in by_node.values()
            for i in range(0, len(node_feeds), per_call)
        ]

    # -- keys ------------------------------------------------------------------------------
    def _activity_key(self, activity_id: str) -> str:
        return f"{self.prefix}:a:{activity_id}"

    def _foreign_key(self, foreign_id: str) -> str:
        return f"{self.prefix}:fid:{foreign_id}"

    def _flat_key(self, group: FeedGroup, user: str) -> str:
        return f"{self.prefix}:f:{{{group.name}:{user}}}"

    def _agg_key(self, group: FeedGroup, user: str) -> str:
        return f"{self.prefix}:g:{{{group.name}:{user}}}:"

    # -- activities ------------------------------------------------------------------------
    async def put_activities(self, activities: Sequence[Activity]) -> None:
        if not activities:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for activity in activities:
                pipe.set(self._activity_key(activity.id), encode_activity(activity))
                if activity.foreign_id is not None:
                    pipe.sadd(self._foreign_key(activity.foreign_id), activity.id)
            await pipe.execute()

    async def get_activities(self, ids: Sequence[str]) -> dict[str, Activity]:
        if not ids:
            return {}
        keys = [self._activity_key(i) for i in ids]
        if isinstance(self.client, RedisCluster):  # one MGET per slot, pipelined per node
            bodies = await self.client.mget_nonatomic(keys)
        else:
            bodies = await self.client.mget(keys)
        return {i: decode_activity(b) for i, b in zip(ids, bodies, strict=True) if b is not None}

    async def delete_activities(self, ids: Sequence[str]) -> None:
        found = await self.get_activities(ids)
        if not found:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for activity in found.values():
                pipe.delete(self._activity_key(activity.id))
                if activity.foreign_id is not None:
                    pipe.srem(self._foreign_key(activity.foreign_id), activity.id)
            await pipe.execute()

    async def find_foreign_ids(self, foreign_ids: Sequence[str]) -> list[str]:
        if not foreign_ids:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for foreign_id in foreign_ids:
                pipe.smembers(self._foreign_key(foreign_id))
            found = await pipe.execute()
        return sorted({_text(i) for members in found for i in members})

    # -- timelines -------------------------------------------------------------------------
    async def add_to_feeds(
        self, group: FeedGroup, users: Sequence[str], entries: Sequence[Entry]
    ) -> list[FeedChange]:
        users = list(dict.fromkeys(users))
        if not users or not entries:
            return []
        ordered = sorted(entries, key=lambda e: e.id)
        if not group.aggregated:
            return await self._add_flat(group, users, [e.id for e in ordered])
        args: list[Any] = [group.merge_window, group.max_length]
        for e in ordered:
            args += [e.id, e.actor, e.verb, e.key]
        keys = [self._agg_key(group, u) for u in users]
        # Aggregation does more per feed: smaller batches keep each call short.
        calls = await self._batched(self._agg_add, users, keys, args, _AGGREGATED_PER_CALL)
        return _aggregated_changes(group, [e.id for e in ordered], calls)

    async def _add_flat(
        self, group: FeedGroup, users: list[str], ids: list[str]
    ) -> list[FeedChange]:
        """One script call per batch of feeds, not per feed: a fanout chunk is one call. The
        script names only the feeds that did not take every id (none, on a first run), so a
        chunk's reply is tiny and every other feed shares one ``ids`` list."""
        args: list[Any] = [group.max_length, *ids]
        keys = [self._flat_key(group, u) for u in users]
        if self.cluster:
            calls = await self._batched(
                self._flat_add, users, keys, args, _FEEDS_PER_CALL, refused=lambda reply: reply[2]
            )
        else:
            calls = await self._flat_calls(users, keys, args)
        changes = []
        for call_users, (odd_feeds, odd_ids, elsewhere) in calls:
            skip = set(elsewhere)  # sent again, in a call of their own
            odd = dict(zip(odd_feeds, odd_ids, strict=True))
            for k, user in enumerate(call_users, 1):
                if k in skip:
                    continue
                got = odd.get(k)
                if got is None:
                    changes.append(FeedChange(user=user, added=ids))
                elif got:
                    changes.append(FeedChange(user=user, added=[_text(i) for i in got]))
        return changes

    async def remove_from_feeds(
        self, group: FeedGroup, users: Sequence[str], ids: Sequence[str]
    ) -> list[FeedChange]:
        users = list(dict.fromkeys(users))
        ids = list(dict.fromkeys(ids))
        if not users or not ids:
            return []
        if group.aggregated:
            script, keys = self._agg_remove, [self._agg_key(group, u) for u in users]
        else:
            script, keys = self._flat_remove, [self._flat_key(group, u) for u in users]
        calls = await self._batched(script, users, keys, ids, 1)
        return self._changes(
            group,
            [u for call_users, _ in calls for u in call_users],
            [r for _, r in calls],
            "removed",
        )

    @staticmethod
    def _changes(
        group: FeedGroup, users: list[str], results: list[Any], what: str
    ) -> list[FeedChange]:
        changes = []
        aggregated = group.aggregated
        with_counts = group.kind is FeedKind.NOTIFICATION
        for user, result in zip(users, results, strict=True):
            counts = None
            if aggregated:
                if with_counts:
                    counts = Counts(int(result[0]), int(result[1]))
                result = result[2:]
            if result:
                ids = [_text(i) for i in result]
                changes.append(FeedChange(user=user, counts=counts, **{what: ids}))
        return changes

    async def read_flat(
        self,
        group: FeedGroup,
        user: str,
        *,
        limit: int,
        id_lt: str | None = None,
        id_gt: str | None = None,
    ) -> list[str]:
        found = await self.client.zrevrangebylex(
            self._flat_key(group, user),
            f"({id_lt}" if id_lt else "+",
            f"({id_gt}" if id_gt else "-",
            start=0,
            num=limit,
        )
        return [_text(i) for i in found]

    async def read_groups(
        self,
        group: FeedGroup,
        user: str,
        *,
        limit: int,
        id_lt: str | None = None,
        id_gt: str | None = None,
    ) -> list[StoredGroup]:
        groups, _ = await self.read_page(group, user, limit=limit, id_lt=id_lt, id_gt=id_gt)
        return groups

    async def read_page(
        self,
        group: FeedGroup,
        user: str,
        *,
        limit: int,
        id_lt: str | None = None,
        id_gt: str | None = None,
    ) -> tuple[list[StoredGroup], Counts]:
        # Members are position..gid: "(id_lt" excludes every member at that position, and
        # "(id_gt" + "g" (above any hex digit) excludes every member at id_gt. The script
        # returns the counts first, read in the same atomic step.
        result = await self._read(group, user, limit, id_lt, id_gt, annotated=False)
        counts = Counts(int(result[0]), int(result[1]))
        return [_stored_group(row) for row in result[2:]], counts

    async def read_inbox(
        self,
        group: FeedGroup,
        user: str,
        *,
        limit: int,
        id_lt: str | None = None,
        id_gt: str | None = None,
    ) -> tuple[list[StoredGroup], Counts, dict[str, Annotation]]:
        result = await self._read(group, user, limit, id_lt, id_gt, annotated=True)
        counts = Counts(int(result[0]), int(result[1]))
        notes = decode_notes(result[2])
        return [_stored_group(row) for row in result[3:]], counts, notes

    async def _read(
        self,
        group: FeedGroup,
        user: str,
        limit: int,
        id_lt: str | None,
        id_gt: str | None,
        *,
        annotated: bool,
    ) -> Any:
        key = self._agg_key(group, user)
        args = [
            f"({id_lt}" if id_lt else "+",
            f"({id_gt}g" if id_gt else "-",
            limit,
            group.max_activities,
            "1" if annotated else "0",
        ]
        result = await self._one(self._agg_read, key, args)
        if result == [b"migrate"]:  # a feed of the previous layout: brought up to date once
            await self._one(self._agg_migrate, key, [])
            result = await self._one(self._agg_read, key, args)
        return result

    async def count(self, group: FeedGroup, user: str) -> int:
        if group.aggregated:
            return int(await self.client.zcard(self._agg_key(group, user) + "o"))
        return int(await self.client.zcard(self._flat_key(group, user)))

    async def trim(self, group: FeedGroup, users: Sequence[str]) -> None:
        if group.aggregated:
            # Adding nothing runs the script's trim step.
            keys = [self._agg_key(group, u) for u in users]
            args = [group.merge_window, group.max_length]
            await self._batched(self._agg_add, users, keys, args, _AGGREGATED_PER_CALL)
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for user in users:
                pipe.zremrangebyrank(self._flat_key(group, user), 0, -group.max_length - 1)
            await pipe.execute()

    # -- notification state ----------------------------------------------------------------
    async def counts(self, group: FeedGroup, user: str) -> Counts:
        key = self._agg_key(group, user)
        # A feed not yet migrated from layout 1 keeps its counts in "c": both read in one
        # round trip (the second is empty once the feed is migrated).
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hmget(key + "h", ["v", "u", "r"])
            pipe.hmget(key + "c", ["unseen", "unread"])
            (layout, unseen, unread), old = await pipe.execute()
        if layout is None:
            unseen, unread = old
        return Counts(int(unseen or 0), int(unread or 0))

    async def mark(
        self,
        group: FeedGroup,
        user: str,
        marks: Marks,
        *,
        group_ids: Sequence[str] = (),
        activity_ids: Sequence[str] = (),
        all: bool = False,
        up_to: str | None = None,
    ) -> Counts:
        flags = [_flag(marks.seen), _flag(marks.read), _flag(marks.archived)]
        key = self._agg_key(group, user)
        if all:
            result = await self._one(self._agg_mark, key, [*flags, "all", up_to or ""])
            return Counts(int(result[0]), int(result[1]))
        result = None
        for mode, targets in (("group", group_ids), ("activity", activity_ids)):
            if targets:
                args = [*flags, mode, "", *dict.fromkeys(targets)]
                result = await self._one(self._agg_mark, key, args)
        if result is None:
            return await self.counts(group, user)
        return Counts(int(result[0]), int(result[1]))

    # -- follow graph ----------------------------------------------------------------------
    def _followers_key(self, user: str) -> str:
        return f"{self.prefix}:fr:{user}"

    def _following_key(self, user: str) -> str:
        return f"{self.prefix}:fg:{user}"

    def _keepers_key(self, user: str) -> str:
        return f"{self.prefix}:fk:{user}"

    async def follow(self, user: str, targets: Sequence[str]) -> list[str]:
        targets = list(dict.fromkeys(targets))
        if not targets:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for target in targets:
                pipe.zadd(self._following_key(user), {target: 0}, nx=True)
                pipe.zadd(self._followers_key(target), {user: 0}, nx=True)
            results = await pipe.execute()
        return [t for t, added in zip(targets, results[::2], strict=True) if added]

    async def unfollow(self, user: str, targets: Sequence[str]) -> list[str]:
        targets = list(dict.fromkeys(targets))
        if not targets:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for target in targets:
                pipe.zrem(self._following_key(user), target)
                pipe.zrem(self._followers_key(target), user)
            results = await pipe.execute()
        return [t for t, removed in zip(targets, results[::2], strict=True) if removed]

    async def keep_history(self, user: str, targets: Sequence[str]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for target in dict.fromkeys(targets):
                pipe.zadd(self._keepers_key(target), {user: 0})
            await pipe.execute()

    async def _flat_calls(
        self, users: list[str], keys: list[str], args: list[Any]
    ) -> list[tuple[list[str], Any]]:
        """``_batched`` for flat_add on one server, its script called by SHA1 alone:
        redis-py's pipeline first asks the server whether a script exists (``SCRIPT
        EXISTS``), a round trip of its own for every fanout chunk. A server that lost the
        script (restarted, flushed) refuses a call with ``NOSCRIPT`` and writes nothing: the
        calls refused are sent again once it is loaded."""
        script = self._flat_add
        todo = [
            (users[i : i + _FEEDS_PER_CALL], keys[i : i + _FEEDS_PER_CALL])
            for i in range(0, len(users), _FEEDS_PER_CALL)
        ]
        done: list[tuple[list[str], Any]] = []
        for attempt in range(2):
            async with self.client.pipeline(transaction=False) as pipe:
                for _, batch_keys in todo:
                    pipe.evalsha(script.sha, len(batch_keys), *batch_keys, *args)
                replies = await pipe.execute(raise_on_error=False)
            lost = []
            for (batch_users, batch_keys), reply in zip(todo, replies, strict=True):
                if isinstance(reply, NoScriptError) and attempt == 0:
                    lost.append((batch_users, batch_keys))
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    done.append((batch_users, reply))
            if not lost:
                break
            await self.client.script_load(script.script)
            todo = lost
        return done

    async def history_keepers(
        self, user: str, *, limit: int, after: str | None = None
    ) -> list[str]:
        return await self._page(self._keepers_key(user), limit, after)

    async def followers(self, user: str, *, limit: int, after: str | None = None) -> list[str]:
        return await self._page(self._followers_key(user), limit, after)

    async def following(self, user: str, *, limit: int, after: str | None = None) -> list[str]:
        return await self._page(self._following_key(user), limit, after)

    async def _page(self, key: str, limit: int, after: str | None) -> list[str]:
        found = await self.client.zrangebylex(
            key, f"({after}" if after else "-", "+", start=0, num=limit
        )
        return [_text(i) for i in found]

    async def follow_counts(self, user: str) -> tuple[int, int]:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zcard(self._followers_key(user))
            pipe.zcard(self._following_key(user))
            followers, following = await pipe.execute()
        return int(followers), int(following)

    # -- preferences -----------------------------------------------------------------------
    async def preferences(self, users: Sequence[str]) -> dict[str, Preferences]:
        return await self._preferences.read(users)

    async def put_preferences(self, user: str, prefs: Preferences) -> None:
        await self._preferences.write(user, prefs)

    # -- lifecycle -------------------------------------------------------------------------
    async def group_members(
        self, group: FeedGroup, user: str, group_ids: Sequence[str]
    ) -> dict[str, list[str]]:
        # Layouts 1 and 2 both keep a group's ids in its own i:<gid> set, on the feed's slot.
        base = self._agg_key(group, user)
        wanted = list(dict.fromkeys(group_ids))
        async with self.client.pipeline(transaction=False) as pipe:
            for gid in wanted:
                pipe.zrange(f"{base}i:{gid}", 0, -1)
            found = await pipe.execute()
        return {
            gid: [_text(i) for i in reversed(ids)]
            for gid, ids in zip(wanted, found, strict=True)
            if ids
        }

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()


def _aggregated_changes(
    group: FeedGroup, ids: list[str], calls: list[tuple[list[str], Any]]
) -> list[FeedChange]:
    """The changes of an aggregated add from its replies (see aggregated_add.lua): feeds that
    took every entry share one ``ids`` list, and feeds with equal counts one ``Counts``, so
    that publishing groups a chunk's followers without an event per follower."""
    with_counts = group.kind is FeedKind.NOTIFICATION
    known: dict[tuple[int, int], Counts] = {}
    changes = []
    for call_users, (counts, odd_feeds, odd_ids) in calls:
        odd = dict(zip(odd_feeds, odd_ids, strict=True))
        for k, user in enumerate(call_users):
            got = odd.get(k + 1)
            added = ids if got is None else [_text(i) for i in got]
            if not added:
                continue
            pair = (counts[2 * k], counts[2 * k + 1])
            shared = known.get(pair)
            if shared is None:
                shared = known[pair] = Counts(*pair)
            changes.append(
                FeedChange(user=user, added=added, counts=shared if with_counts else None)
            )
    return changes


def _stored_group(row: list[Any]) -> StoredGroup:
    """A group from the read script: its id, its record (``pack`` in common.lua) and its
    newest activity ids."""
    gid, raw, ids = row
    # Lengths are in bytes (a verb or key may be any UTF-8): decode after slicing.
    verb_end = 75 + int(raw[71:75], 16)
    head = raw[:75].decode()
    return StoredGroup(
        id=_text(gid),
        key=raw[verb_end:].decode(),
        verb=raw[75:verb_end].decode(),
        activity_ids=[_text(i) for i in ids],
        activity_count=int(head[55:63], 16),
        actor_count=int(head[63:71], 16),
        position=head[3:29],
        oldest=head[29:55],
        is_seen=head[0] == "1",
        is_read=head[1] == "1",
        is_archived=head[2] == "1",
    )
