"""Property tests: random sequences of adds, removes and marks give, on every backend, exactly
what the naive reference model gives, and counts always equal a recount of the groups."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifier.feedgroups import FeedGroup
from notifier.storage.base import Counts, Entry, Marks, Storage
from tests.conftest import StorageFactory
from tests.storage.helpers import aid, flat, notification
from tests.storage.reference import RefAggregatedFeed

POOL = 24  # activities 0..23; each has a fixed actor and key so re-adds are true duplicates
ENTRIES = [Entry(aid(n), f"actor{n % 3}", "like", f"key{(n * 7) % 4}") for n in range(POOL)]

flags = st.one_of(st.none(), st.booleans())
marks = st.tuples(flags, flags, flags).filter(lambda t: t != (None, None, None))
ops = st.one_of(
    st.tuples(st.just("add"), st.lists(st.integers(0, POOL - 1), min_size=1, max_size=4)),
    st.tuples(st.just("remove"), st.lists(st.integers(0, POOL - 1), min_size=1, max_size=3)),
    st.tuples(st.just("mark_groups"), marks, st.lists(st.integers(0, POOL - 1), max_size=3)),
    st.tuples(st.just("mark_activities"), marks, st.lists(st.integers(0, POOL - 1), max_size=3)),
    st.tuples(st.just("mark_all"), marks, st.one_of(st.none(), st.integers(0, POOL - 1))),
)
#: NOTIFIER_PROPERTY_EXAMPLES=5000 for a long run (a storage layout change deserves one).
EXAMPLES = int(os.environ.get("NOTIFIER_PROPERTY_EXAMPLES", "200"))
PROFILE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def recount(groups: list[Any]) -> Counts:
    return Counts(
        sum(not g.is_seen and not g.is_archived for g in groups),
        sum(not g.is_read and not g.is_archived for g in groups),
    )


async def apply(
    store: Storage, group: FeedGroup, model: RefAggregatedFeed, op: tuple[Any, ...]
) -> None:
    """One operation of a program, on ``bo``'s feed in ``store`` and in the model."""
    kind = op[0]
    if kind == "add":
        batch = [ENTRIES[n] for n in op[1]]
        await store.add_to_feeds(group, ["bo"], batch)
        model.add(batch)
    elif kind == "remove":
        ids = [aid(n) for n in op[1]]
        await store.remove_from_feeds(group, ["bo"], ids)
        model.remove(ids)
    else:
        m = Marks(*op[1])
        if kind == "mark_groups":
            ids = [aid(n) for n in op[2]]
            await store.mark(group, "bo", m, group_ids=ids)
            model.mark(m, [g for g in model.groups if g.id in ids])
        elif kind == "mark_activities":
            ids = [aid(n) for n in op[2]]
            await store.mark(group, "bo", m, activity_ids=ids)
            model.mark(m, [g for g in model.groups if set(g.entries) & set(ids)])
        else:
            up_to = None if op[2] is None else aid(op[2])
            await store.mark(group, "bo", m, all=True, up_to=up_to)
            model.mark(m, [g for g in model.groups if up_to is None or g.position <= up_to])


async def check(store: Storage, group: FeedGroup, model: RefAggregatedFeed, op: Any) -> None:
    """The feed as stored equals the model's: groups, counts (and a recount), length."""
    stored = await store.read_groups(group, "bo", limit=1000)
    assert stored == model.stored(), f"after {op}"
    counts = await store.counts(group, "bo")
    assert counts == model.counts() == recount(stored), f"after {op}"
    assert await store.count(group, "bo") == len(model.groups)


async def replay_aggregated(
    store: Storage, program: list[Any], max_length: int, window: int
) -> None:
    group = notification(max_length=max_length, window=window, shown=3)
    model = RefAggregatedFeed(max_length, window, shown=3)
    try:
        for op in program:
            await apply(store, group, model, op)
            await check(store, group, model, op)
    finally:
        await store.close()


@PROFILE
@given(
    program=st.lists(ops, min_size=1, max_size=25),
    max_length=st.integers(1, 6),
    window=st.integers(1, 4),
)
def test_aggregated_feeds_match_the_reference_model(
    storage_factory: StorageFactory, program: list[Any], max_length: int, window: int
) -> None:
    asyncio.run(replay_aggregated(storage_factory(), program, max_length, window))


async def replay_flat(
    store: Storage, program: list[tuple[str, list[int]]], max_length: int
) -> None:
    group = flat(max_length=max_length)
    model: set[str] = set()
    try:
        for kind, numbers in program:
            ids = [aid(n) for n in numbers]
            if kind == "add":
                await store.add_to_feeds(group, ["bo"], [ENTRIES[n] for n in numbers])
                model |= set(ids)
                model = set(sorted(model)[-max_length:])
            else:
                await store.remove_from_feeds(group, ["bo"], ids)
                model -= set(ids)
            expected = sorted(model, reverse=True)
            pages: list[str] = []
            cursor = None
            while page := await store.read_flat(group, "bo", limit=2, id_lt=cursor):
                pages += page
                cursor = page[-1]
            assert pages == expected
            assert await store.count(group, "bo") == len(expected)
    finally:
        await store.close()


@PROFILE
@given(
    program=st.lists(
        st.tuples(
            st.sampled_from(["add", "remove"]),
            st.lists(st.integers(0, POOL - 1), min_size=1, max_size=4),
        ),
        min_size=1,
        max_size=20,
    ),
    max_length=st.integers(1, 8),
)
def test_flat_feeds_match_the_reference_model(
    storage_factory: StorageFactory, program: list[tuple[str, list[int]]], max_length: int
) -> None:
    asyncio.run(replay_flat(storage_factory(), program, max_length))
