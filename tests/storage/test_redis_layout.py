"""The Redis backend's aggregated-feed layout: feeds written by the previous layout (1: six
hashes per feed) keep working under layout 2 (one hash, and a group's ids and actor tally),
migrated by whatever touches them first, a read, an add, a mark or a removal, and then match
the reference model exactly; and the group index (newest group per key) never sends an
activity to a vanished group.

Layout-1 feeds are written here by layout 1's own scripts (tests/storage/redis_v1, as the
previous release shipped them), not built by hand."""

from __future__ import annotations

import asyncio
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.storage.base import Counts, Entry, Marks
from notifier.storage.redis import CROSS_SLOT, RedisStorage
from tests.storage.helpers import aid, entry, notification
from tests.storage.reference import RefAggregatedFeed
from tests.storage.test_properties import ENTRIES, POOL, PROFILE, apply, check, marks, ops

pytestmark = pytest.mark.single_redis

V1 = Path(__file__).parent / "redis_v1"


def v1_script(name: str) -> str:
    """A layout-1 script, composed as the previous release composed it."""
    prelude = resources.files("notifier.storage").joinpath("redis_scripts", "feeds.lua")
    parts = [CROSS_SLOT + "local SUFFIXES = {'~'}", prelude.read_text()]
    parts += [(V1 / "common.lua").read_text(), (V1 / f"{name}.lua").read_text()]
    return "\n".join(parts)


class V1Writer:
    """Adds and marks with layout 1's scripts, as a previous notifier did."""

    def __init__(self, storage: RedisStorage) -> None:
        self.add_script = storage.client.register_script(v1_script("aggregated_add"))
        self.mark_script = storage.client.register_script(v1_script("aggregated_mark"))

    async def add(self, key: str, window: int, max_length: int, entries: list[Entry]) -> None:
        args: list[Any] = [window, max_length]
        for e in sorted(entries, key=lambda e: e.id):
            args += [e.id, e.actor, e.verb, e.key]
        await self.add_script(keys=[key], args=args)

    async def mark(self, key: str, m: Marks, mode: str, up_to: str, ids: list[str]) -> None:
        flags = ["-" if v is None else "1" if v else "0" for v in (m.seen, m.read, m.archived)]
        await self.mark_script(keys=[key], args=[*flags, mode, up_to, *ids])


def _up_to(model: RefAggregatedFeed, n: int | None) -> tuple[str | None, list[Any]]:
    """``mark all`` up to activity ``n`` (None: no bound): the bound and the model's groups."""
    up_to = None if n is None else aid(n)
    return up_to, [g for g in model.groups if up_to is None or g.position <= up_to]


#: The logical database these tests keep their feeds in: ``_keys`` scans it, and the session's
#: database 0 may hold millions of other tests' keys.
LAYOUT_DB = 11


def _storage(redis_url: str) -> RedisStorage:
    url = redis_url.rsplit("/", 1)[0] + f"/{LAYOUT_DB}"
    return RedisStorage.from_url(url, prefix=f"lay{uuid.uuid4().hex[:8]}")


#: Layout 1's keys of a feed besides the order and the per-group keys: gone once migrated.
LAYOUT_1 = {"m", "k", "v", "s", "c", "x"}


def _layout_2(keys: set[str], gids: set[str] | None = None) -> bool:
    """Whether ``keys`` (a feed's, after its base key) are layout 2's: the order, the hash and
    each group's ids and tally (exactly those of ``gids`` when given)."""
    per_group = {k for k in keys if k.startswith(("i:", "u:"))}
    if gids is not None and per_group - {f"{p}:{g}" for g in gids for p in "iu"}:
        return False
    return not keys & LAYOUT_1 and keys - per_group <= {"o", "h"}


async def _keys(storage: RedisStorage, feed: str) -> set[str]:
    found = storage.client.scan_iter(f"{feed}*", count=1000)
    return {k.decode()[len(feed) :] async for k in found}


v1_ops = st.one_of(
    st.tuples(st.just("add"), st.lists(st.integers(0, POOL - 1), min_size=1, max_size=4)),
    st.tuples(st.just("mark_groups"), marks, st.lists(st.integers(0, POOL - 1), max_size=3)),
    st.tuples(st.just("mark_all"), marks, st.one_of(st.none(), st.integers(0, POOL - 1))),
)
first_touch = st.sampled_from(["read", "counts", "add", "remove", "mark"])


async def replay_across_layouts(
    redis_url: str, before: list[Any], touch: str, after: list[Any], max_length: int,
    window: int,
) -> None:  # fmt: skip
    storage = _storage(redis_url)
    group = notification(max_length=max_length, window=window, shown=3)
    model = RefAggregatedFeed(max_length, window, shown=3)
    feed = storage._agg_key(group, "bo")
    old = V1Writer(storage)
    try:
        for op in before:
            if op[0] == "add":
                batch = [ENTRIES[n] for n in op[1]]
                await old.add(feed, window, max_length, batch)
                model.add(batch)
            elif op[0] == "mark_groups":
                ids = [aid(n) for n in op[2]]
                await old.mark(feed, Marks(*op[1]), "group", "", ids)
                model.mark(Marks(*op[1]), [g for g in model.groups if g.id in ids])
            else:
                up_to, targets = _up_to(model, op[2])
                await old.mark(feed, Marks(*op[1]), "all", up_to or "", [])
                model.mark(Marks(*op[1]), targets)
        # The first thing layout 2 does with the feed.
        if touch == "read":
            assert await storage.read_groups(group, "bo", limit=1000) == model.stored()
        elif touch == "counts":
            assert await storage.counts(group, "bo") == model.counts()
        elif touch == "add":
            batch = [ENTRIES[n] for n in (5, 17)]
            await storage.add_to_feeds(group, ["bo"], batch)
            model.add(batch)
        elif touch == "remove":
            ids = [aid(n) for n in (0, 3, 7)]
            await storage.remove_from_feeds(group, ["bo"], ids)
            model.remove(ids)
        else:
            await storage.mark(group, "bo", Marks(True, None, None), all=True)
            model.mark(Marks(True, None, None), model.groups)
        if touch != "counts":
            # Migrated: none of layout 1's keys is left (counts only reads; the rest write).
            live = {g.id for g in model.groups}
            assert _layout_2(await _keys(storage, feed), live), await _keys(storage, feed)
        for op in after:
            await apply(storage, group, model, op)
        await check(storage, group, model, after[-1:] or touch)
    finally:
        await storage.close()


@PROFILE
@given(
    before=st.lists(v1_ops, min_size=1, max_size=15),
    touch=first_touch,
    after=st.lists(ops, max_size=10),
    max_length=st.integers(1, 6),
    window=st.integers(1, 4),
)
def test_layout_1_feeds_migrate_on_first_touch_and_match_the_model(
    redis_url: str, before: list[Any], touch: str, after: list[Any], max_length: int,
    window: int,
) -> None:  # fmt: skip
    asyncio.run(replay_across_layouts(redis_url, before, touch, after, max_length, window))


async def test_a_layout_1_feed_is_migrated_by_a_read_and_loses_its_old_keys(
    redis_url: str,
) -> None:
    storage = _storage(redis_url)
    group = notification(window=3)
    feed = storage._agg_key(group, "bo")
    try:
        old = V1Writer(storage)
        await old.add(feed, 3, 100, [entry(1, key="a"), entry(2, key="b", actor="cy")])
        await old.add(feed, 3, 100, [entry(3, key="a", actor="dee")])
        before = await _keys(storage, feed)
        assert {"o", "m", "s", "c", "x"} <= before and any(k.startswith("i:") for k in before)
        groups = await storage.read_groups(group, "bo", limit=10)
        assert [(g.key, g.activity_count, g.actor_count) for g in groups] == [
            ("a", 2, 2),
            ("b", 1, 1),
        ]
        assert _layout_2(after := await _keys(storage, feed), {g.id for g in groups})
        assert {"o", "h"} <= after and before - LAYOUT_1 <= after  # per-group keys kept as is
        assert await storage.counts(group, "bo") == Counts(2, 2)
        # The migrated index still merges into the newest group with the key.
        await storage.add_to_feeds(group, ["bo"], [entry(4, key="b")])
        groups = await storage.read_groups(group, "bo", limit=10)
        assert [(g.key, g.activity_count) for g in groups] == [("b", 2), ("a", 2)]
    finally:
        await storage.close()


async def test_an_index_entry_for_a_vanished_group_opens_a_new_group(redis_url: str) -> None:
    storage = _storage(redis_url)
    group = notification(window=3)
    try:
        await storage.add_to_feeds(group, ["bo"], [entry(1, key="a")])
        fields = storage._agg_key(group, "bo") + "h"
        await storage.client.hset(fields, "ka", "0" * 52)  # names no group of the feed
        await storage.add_to_feeds(group, ["bo"], [entry(2, key="a")])
        groups = await storage.read_groups(group, "bo", limit=10)
        assert [(g.key, g.activity_count) for g in groups] == [("a", 1), ("a", 1)]
    finally:
        await storage.close()


async def test_a_feed_is_its_order_its_hash_and_each_groups_ids_and_tally(
    redis_url: str,
) -> None:
    storage = _storage(redis_url)
    group = notification(window=5)
    try:
        entries = [entry(n, key=f"k{n % 7}", actor=f"a{n % 4}") for n in range(60)]
        await storage.add_to_feeds(group, ["bo"], entries)
        groups = await storage.read_groups(group, "bo", limit=1000)
        keys = await _keys(storage, storage._agg_key(group, "bo"))
        assert keys == {"o", "h"} | {f"{p}:{g.id}" for g in groups for p in "iu"}
        assert len(groups) > 7
    finally:
        await storage.close()
