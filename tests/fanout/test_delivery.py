"""At-least-once delivery with idempotent writes: reruns, failures mid-chunk, dead letters."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest

from notifier.fanout.broker import dead_letters, requeue_dead_letters
from notifier.fanout.jobs import ChunkJob, Priority
from notifier.fanout.runtime import open_manager
from notifier.feedgroups import FeedGroup
from notifier.feeds import entries_for
from notifier.realtime.bus import RecordingBus, UserEvent
from notifier.storage.base import Entry, FeedChange
from notifier.storage.memory import MemoryStorage
from tests.fanout.conftest import Harness, close, make_config, memory_harness, wait_until


async def test_a_chunk_run_twice_leaves_feeds_and_counts_as_one_run(harness: Harness) -> None:
    ana = harness.user("ana")
    users = [harness.user(f"f{i:03d}") for i in range(300)]
    post = harness.app().activity(actor=ana, verb="post", object="post:1")
    await harness.storage.put_activities([post])
    entries = {g.name: entries_for(g, [post]) for g in harness.manager.fanout_groups}
    job = ChunkJob(op="add", actor=ana, activity_ids=[post.id], users=users, entries=entries)

    await harness.manager.run_chunk(job)
    once = await harness.read_all("timeline", users), await harness.counts_all("digest", users)
    await harness.manager.run_chunk(job)
    # And twice more through the broker, as a redelivered message would be.
    await harness.manager.dispatcher.send([(Priority.LOW, job), (Priority.HIGH, job)])
    await harness.manager.join(60)

    assert (
        await harness.read_all("timeline", users),
        await harness.counts_all("digest", users),
    ) == once
    assert all(ids == [post.id] for ids in once[0].values())
    assert set(once[1].values()) == {(1, 1, 1)}
    if harness.bus is not None:
        # Only the run that changed a feed announces it.
        assert len(harness.bus.for_user(users[0])) == 2  # timeline + digest, once each


class FlakyStorage(MemoryStorage):
    """Memory storage whose notification writes fail the first ``failures`` times: a worker
    that dies between a chunk's first and second storage call."""

    def __init__(self, failures: int, poison: str | None = None) -> None:
        super().__init__()
        self.failures = failures
        self.poison = poison

    async def add_to_feeds(
        self, group: FeedGroup, users: Sequence[str], entries: Sequence[Entry]
    ) -> list[FeedChange]:
        if group.name == "digest" and (
            (self.poison is not None and self.poison in users)
            or (self.poison is None and self.failures > 0)
        ):
            self.failures -= 1
            raise ConnectionError("storage went away mid-chunk")
        return await super().add_to_feeds(group, users, entries)


async def test_a_chunk_failing_halfway_is_retried_and_ends_exactly_once() -> None:
    config, _ = make_config("memory://", "mem", max_retries=5, min_backoff_ms=10)
    storage = FlakyStorage(failures=3)
    bus = RecordingBus()
    manager = open_manager(config, storage=storage, bus=bus, threads=2)
    harness = Harness("memory", config, manager, bus=bus)
    try:
        followers = [f"f{i:04d}" for i in range(1_000)]
        await harness.follow_all(followers, "ana")
        post = harness.app().activity(actor="ana", verb="post", object="post:1")
        await manager.add_activity(post)
        await manager.join(60)
        assert storage.failures == 0
        assert all(
            ids == [post.id] for ids in (await harness.read_all("timeline", followers)).values()
        )
        assert set((await harness.counts_all("digest", followers)).values()) == {(1, 1, 1)}
        timeline_events = [e for e in bus.events if e.feed == "timeline"]
        assert sorted(e.user for e in timeline_events) == followers
        assert dead_letters(harness.actors) == []
    finally:
        await close(harness)


async def test_a_chunk_that_keeps_failing_is_dead_lettered_logged_and_can_be_requeued(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config, _ = make_config("memory://", "mem", max_retries=2, min_backoff_ms=10, chunk_size=10)
    storage = FlakyStorage(failures=0, poison="f0005")
    manager = open_manager(config, storage=storage, threads=2)
    harness = Harness("memory", config, manager)
    caplog.set_level(logging.WARNING, logger="notifier.fanout")
    try:
        followers = [f"f{i:04d}" for i in range(30)]
        await harness.follow_all(followers, "ana")
        post = harness.app().activity(actor="ana", verb="post", object="post:1")
        await manager.add_activity(post)
        await manager.join(60)
        # The dead letter is logged as the job is nacked, which join() does not wait for.
        await wait_until(lambda: _true(any("dead-lettered" in r.getMessage()
                                           for r in caplog.records)), within=10)  # fmt: skip

        [letter] = dead_letters(harness.actors)
        assert letter.args[0]["users"] == followers[:10]
        failures = [r for r in caplog.records if "fanout job failed" in r.getMessage()]
        assert len(failures) == 3  # the first run and two retries
        [dead] = [r for r in caplog.records if "dead-lettered" in r.getMessage()]
        assert dead.levelno == logging.ERROR
        assert f"op=add actor=ana activities={post.id} users=10" in dead.getMessage()
        # The other chunks were not held back by the poisoned one.
        digests = await harness.counts_all("digest", followers)
        assert {u for u, c in digests.items() if c == (1, 1, 1)} == set(followers[10:])

        storage.poison = None  # the cause is fixed; an operator requeues
        assert requeue_dead_letters(harness.actors) == 1
        await manager.join(60)
        assert dead_letters(harness.actors) == []
        assert set((await harness.counts_all("digest", followers)).values()) == {(1, 1, 1)}
    finally:
        await close(harness)


async def test_a_chunk_for_an_activity_removed_meanwhile_takes_its_copies_back_out() -> None:
    harness = await memory_harness()
    try:
        post = harness.app().activity(actor="ana", verb="post", object="post:1")
        entries = {g.name: entries_for(g, [post]) for g in harness.manager.fanout_groups}
        # The body is already gone (removed after the fanout job read the followers).
        job = ChunkJob(op="add", actor="ana", activity_ids=[post.id], users=["bo"], entries=entries)
        await harness.manager.run_chunk(job)
        assert await harness.read_all("timeline", ["bo"]) == {"bo": []}
        assert await harness.counts_all("digest", ["bo"]) == {"bo": (0, 0, 0)}
    finally:
        await close(harness)


async def test_an_app_can_supply_its_own_follower_lookup() -> None:
    class Graph:
        async def followers(self, user: str, *, limit: int, after: str | None = None) -> list[str]:
            everyone = ["x1", "x2", "x3"] if user == "ana" else []
            return [u for u in everyone if after is None or u > after][:limit]

        async def follower_count(self, user: str) -> int:
            return 3 if user == "ana" else 0

    config, _ = make_config("memory://", "mem", chunk_size=2)
    manager = open_manager(config, followers=Graph(), threads=1)
    harness = Harness("memory", config, manager)
    try:
        post = harness.app().activity(actor="ana", verb="post", object="post:1")
        await manager.add_activity(post)
        await manager.join(30)
        assert await harness.read_all("timeline", ["x1", "x2", "x3"]) == {
            u: [post.id] for u in ("x1", "x2", "x3")
        }
        assert await manager.followers("ana", limit=10) == ["x1", "x2", "x3"]
    finally:
        await close(harness)


async def test_a_failing_bus_is_logged_and_does_not_undo_or_repeat_writes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class BrokenBus:
        async def publish(self, events: Sequence[UserEvent]) -> None:
            raise ConnectionError("pub/sub down")

        async def publish_shared(self, feed: str, kind: str, shared: Sequence[object]) -> None:
            raise ConnectionError("pub/sub down")

    config, _ = make_config("memory://", "mem")
    manager = open_manager(config, bus=BrokenBus(), threads=1)
    harness = Harness("memory", config, manager)
    try:
        await harness.follow_all(["bo"], "ana")
        post = harness.app().activity(actor="ana", verb="post", object="post:1")
        await manager.add_activity(post)
        await manager.join(30)
        assert await harness.read_all("timeline", ["bo"]) == {"bo": [post.id]}
        assert any("realtime publish failed" in r.getMessage() for r in caplog.records)
        assert dead_letters(harness.actors) == []
    finally:
        await close(harness)


def test_jobs_survive_the_broker_encoding() -> None:
    from dramatiq import Message

    from notifier.fanout.actors import FanoutActors
    from notifier.fanout.broker import make_broker
    from notifier.fanout.jobs import FanoutJob

    config, _ = make_config("memory://", "mem")
    actors = FanoutActors(make_broker(config.fanout, "memory://"), config.fanout)
    job = FanoutJob(
        op="add",
        actor="ana",
        activity_ids=["a"],
        entries={"digest": [Entry("a", "ana", "like", "like:ana")]},
    )
    message = actors.message(Priority.LOW, job)
    decoded: Any = Message.decode(message.encode()).args[0]
    assert msgspec.convert(decoded, FanoutJob) == job
    assert message.queue_name == config.fanout.low_queue


async def test_two_in_process_managers_share_the_actor_loop_until_the_last_closes() -> None:
    first, second = await memory_harness(threads=1), await memory_harness(threads=1)
    try:
        await close(first)
        await second.follow_all(["bo"], "ana")
        post = second.app().activity(actor="ana", verb="post", object="post:1")
        await second.manager.add_activity(post)
        await second.manager.join(30)
        assert await second.read_all("timeline", ["bo"]) == {"bo": [post.id]}
    finally:
        await close(second)


async def _true(value: bool) -> bool:
    return value
