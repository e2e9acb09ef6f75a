"""Expiry on timers: an activity with ``expires_at`` leaves every feed and count by itself, with
real brokers and workers (memory: the in-process broker and worker threads; Redis: dramatiq's
Redis broker and ``notifier worker`` processes)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.middleware import Middleware

from notifier.fanout.importer import import_file
from notifier.fanout.runtime import open_manager
from notifier.fanout.timers import Expire
from notifier.model import Activity
from notifier.realtime.bus import RecordingBus
from notifier.storage.memory import MemoryStorage
from tests.fanout.conftest import (
    Harness,
    close,
    make_config,
    memory_harness,
    redis_harness,
    start_in_process,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)


class TimerLog(Middleware):
    """Counts what the timer actor did in this process: delays sent, runs finished."""

    def __init__(self) -> None:
        self.delays: list[int | None] = []
        self.runs = 0

    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        if message.actor_name == "notifier.timer":
            self.delays.append(delay)

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if message.actor_name == "notifier.timer" and exception is None:
            self.runs += 1


async def logged_memory_harness(**fanout: Any) -> tuple[Harness, TimerLog]:
    harness = await memory_harness(start=False, **fanout)
    timers = TimerLog()
    harness.actors.broker.add_middleware(timers)
    start_in_process(harness, threads=4)
    return harness, timers


def in_(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def timers_done(harness: Harness, within: float = 30) -> None:
    """Every timer of the harness has run: none waits, none is held by a worker."""
    queue = harness.config.fanout.timer_queue
    await wait_until(lambda: _true(harness.actors.pending(queue) == 0), within=within)


async def _true(value: bool) -> bool:
    return value


async def expiring_post(
    harness: Harness, actor: str, to: Sequence[str], seconds: float
) -> Activity:
    return harness.app().activity(
        actor=actor, verb="post", object=f"post:{actor}", to=to, expires_at=in_(seconds)
    )


async def test_an_expiring_activity_leaves_every_feed_and_count_by_itself(harness: Harness) -> None:
    ana, cy, bo = harness.user("ana"), harness.user("cy"), harness.user("bo")
    await harness.manager.follow(bo, ana, backfill=0)
    await harness.manager.follow(bo, cy, backfill=0)
    post = await expiring_post(harness, ana, [f"notification:{bo}"], 2.5)
    keep = harness.app().activity(actor=cy, verb="post", object="post:cy")
    await harness.manager.add_activities([post, keep])  # one batch, one of them expiring
    await harness.manager.join(30)

    # Before it expires: in the actor's feed, the follower's timeline and notification feeds
    # (fanout), the "to" feed, and counted.
    assert datetime.now(UTC) < post.expires_at  # type: ignore[operator]
    assert (await harness.read_all("user", [ana]))[ana] == [post.id]
    assert (await harness.read_all("timeline", [bo]))[bo] == [keep.id, post.id]
    assert (await harness.counts_all("digest", [bo]))[bo] == (2, 2, 2)
    assert (await harness.counts_all("notification", [bo]))[bo] == (1, 1, 1)

    async def expired() -> bool:
        return (await harness.read_all("timeline", [bo]))[bo] == [keep.id]

    await wait_until(expired, within=30)
    late = datetime.now(UTC) - post.expires_at  # type: ignore[operator]
    assert late >= timedelta(0)
    print(f"{harness.backend}: timeline copy gone {late.total_seconds():.3f}s after expires_at")
    await harness.manager.join(30)  # the removal's chunks
    assert (await harness.read_all("user", [ana]))[ana] == []
    assert (await harness.counts_all("digest", [bo]))[bo] == (1, 1, 1)
    assert (await harness.counts_all("notification", [bo]))[bo] == (0, 0, 0)
    assert await harness.storage.get_activities([post.id, keep.id]) == {keep.id: keep}
    if harness.bus is not None:
        # Announced live, with the counts that dropped.
        removed = [e for e in harness.bus.for_user(bo) if e.kind == "removed"]
        assert {e.feed for e in removed} == {"timeline", "digest", "notification"}
        [notification] = [e for e in removed if e.feed == "notification"]
        assert notification.activity_ids == [post.id]
        assert (notification.counts.unseen, notification.counts.unread) == (0, 0)  # type: ignore[union-attr]


async def test_a_timer_run_twice_removes_once_and_leaves_feeds_and_counts_as_one_run(
    harness: Harness,
) -> None:
    ana, bo = harness.user("ana"), harness.user("bo")
    await harness.manager.follow(bo, ana, backfill=0)
    post = await expiring_post(harness, ana, [f"notification:{bo}"], 1.5)
    await harness.manager.add_activity(post)
    # A second timer for the same activity, as a redelivered message would be.
    await harness.manager.schedule(Expire(activity_id=post.id), post.expires_at)  # type: ignore[arg-type]
    await harness.manager.join(30)
    assert (await harness.counts_all("notification", [bo]))[bo] == (1, 1, 1)

    await timers_done(harness)
    await harness.manager.join(30)
    after = (
        await harness.read_all("timeline", [bo]),
        await harness.counts_all("notification", [bo]),
        await harness.counts_all("digest", [bo]),
    )
    assert after == ({bo: []}, {bo: (0, 0, 0)}, {bo: (0, 0, 0)})
    await harness.manager.run_timer(Expire(activity_id=post.id))  # and once more, in place
    await harness.manager.join(30)
    assert (
        await harness.read_all("timeline", [bo]),
        await harness.counts_all("notification", [bo]),
        await harness.counts_all("digest", [bo]),
    ) == after
    if harness.bus is not None:
        removed = [e for e in harness.bus.for_user(bo) if e.kind == "removed"]
        assert sorted(e.feed for e in removed) == ["digest", "notification", "timeline"]


async def test_an_activity_removed_before_it_expires_makes_its_timer_a_no_op() -> None:
    harness, timers = await logged_memory_harness()
    try:
        assert isinstance(harness.bus, RecordingBus)
        await harness.manager.follow("bo", "ana", backfill=0)
        post = await expiring_post(harness, "ana", ["notification:bo"], 1)
        await harness.manager.add_activity(post)
        await harness.manager.join(30)
        await harness.manager.remove_activity(post.id)
        await harness.manager.join(30)
        events = list(harness.bus.events)
        assert (await harness.counts_all("notification", ["bo"]))["bo"] == (0, 0, 0)

        await timers_done(harness)
        assert timers.runs == 1
        await harness.manager.join(30)
        assert harness.bus.events == events  # nothing more announced
        assert (await harness.read_all("timeline", ["bo"]))["bo"] == []
    finally:
        await close(harness)


async def test_a_long_expiry_is_re_armed_in_steps_of_the_cap_on_the_in_process_broker() -> None:
    harness, timers = await logged_memory_harness(timer_max_delay_s=1)
    try:
        post = await expiring_post(harness, "ana", ["notification:bo"], 3)
        await harness.manager.add_activity(post)

        async def gone() -> bool:
            return (await harness.counts_all("notification", ["bo"]))["bo"] == (0, 0, 0)

        await wait_until(gone, within=30)
        assert datetime.now(UTC) >= post.expires_at  # type: ignore[operator]
        # Sent with the cap (1 s), sent again twice for the rest, each delay at most the cap
        # (None: a worker moving a due message from the delay queue onto the timers queue).
        sent = [d for d in timers.delays if d is not None]
        assert len(sent) >= 3 and all(0 < d <= 1000 for d in sent), timers.delays
        assert timers.runs >= 3
    finally:
        await close(harness)


async def test_a_long_expiry_is_re_armed_in_steps_of_the_cap_on_redis(
    storage_redis_url: str, redis_url: str, pools: list[Harness]
) -> None:
    harness = await redis_harness(storage_redis_url, workers=1, timer_max_delay_s=1)
    pools.append(harness)
    bo = harness.user("bo")
    post = await expiring_post(harness, harness.user("ana"), [f"notification:{bo}"], 3)
    await harness.manager.add_activity(post)
    assert (await harness.counts_all("notification", [bo]))[bo] == (1, 1, 1)

    # Watch the delayed messages the broker (and the worker holding them) keep meanwhile.
    broker = redis.Redis.from_url(redis_url)
    held = f"{harness.config.fanout.namespace}:{harness.config.fanout.timer_queue}.DQ.msgs"
    seen: set[str] = set()
    ahead: list[float] = []
    try:
        while (await harness.counts_all("notification", [bo]))[bo] != (0, 0, 0):
            assert datetime.now(UTC) < post.expires_at + timedelta(seconds=20)  # type: ignore[operator]
            for body in broker.hvals(held):
                message = json.loads(body)
                seen.add(message["message_id"])
                ahead.append(message["options"]["eta"] - time.time() * 1000)
            await asyncio.sleep(0.05)
    finally:
        broker.close()
    assert datetime.now(UTC) >= post.expires_at  # type: ignore[operator]
    assert len(seen) >= 3, seen  # the first send and two re-arms
    assert max(ahead) <= 1000 + 50, max(ahead)  # never more than the cap ahead (+ clock slack)


class FlakyReads(MemoryStorage):
    """Memory storage whose body reads fail while ``failures`` lasts: a backend outage."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    async def get_activities(self, ids: Sequence[str]) -> dict[str, Activity]:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("storage went away")
        return await super().get_activities(ids)


async def test_a_timer_that_finds_the_backend_down_is_retried() -> None:
    config, _ = make_config("memory://", "mem", min_backoff_ms=20, max_retries=5)
    storage = FlakyReads()
    manager = open_manager(config, storage=storage, bus=RecordingBus(), threads=2)
    harness = Harness("memory", config, manager)
    try:
        post = await expiring_post(harness, "ana", ["notification:bo"], 1)
        await manager.add_activity(post)
        await manager.join(30)
        storage.failures = 3  # down when the timer runs

        async def gone() -> bool:
            return (await harness.counts_all("notification", ["bo"]))["bo"] == (0, 0, 0)

        await wait_until(gone, within=30)
        assert storage.failures == 0
        assert await storage.get_activities([post.id]) == {}
    finally:
        await close(harness)


async def test_imported_activities_expire_too(tmp_path: Path) -> None:
    harness = await memory_harness()
    try:
        expires = in_(1.5).isoformat()
        lines = [
            {"type": "follow", "user": "bo", "target": "ana"},
            {"type": "activity", "actor": "ana", "verb": "post", "object": "post:1",
             "to": ["notification:bo"], "expires_at": expires},
            {"type": "activity", "actor": "ana", "verb": "post", "object": "post:2"},
        ]  # fmt: skip
        source = tmp_path / "in.jsonl"
        source.write_text("".join(json.dumps(line) + "\n" for line in lines))
        state = await import_file(harness.manager, source, batch=10)
        assert (state.activities, state.bad) == (2, 0)
        await harness.manager.join(30)
        assert len((await harness.read_all("timeline", ["bo"]))["bo"]) == 2

        async def expired() -> bool:
            return len((await harness.read_all("timeline", ["bo"]))["bo"]) == 1

        await wait_until(expired, within=30)
        assert (await harness.counts_all("notification", ["bo"]))["bo"] == (0, 0, 0)
    finally:
        await close(harness)


async def test_a_timer_held_by_a_killed_worker_still_runs_on_another(
    storage_redis_url: str, redis_url: str, pools: list[Harness]
) -> None:
    harness = await redis_harness(storage_redis_url, workers=1)
    pools.append(harness)
    assert harness.pool is not None
    bo = harness.user("bo")
    post = await expiring_post(harness, harness.user("ana"), [f"notification:{bo}"], 3)
    await harness.manager.add_activity(post)
    queue = f"{harness.config.fanout.namespace}:{harness.config.fanout.timer_queue}.DQ"
    broker = redis.Redis.from_url(redis_url)
    try:
        # Fetched: off the delay queue's list, its body kept until the worker acknowledges it.
        held = lambda: _true(broker.llen(queue) == 0 and broker.hlen(f"{queue}.msgs") == 1)  # noqa: E731
        await wait_until(held, within=10)
    finally:
        broker.close()
    harness.pool.kill(harness.pool.procs[0])
    harness.pool.start(1)

    async def gone() -> bool:
        return (await harness.counts_all("notification", [bo]))[bo] == (0, 0, 0)

    await wait_until(gone, within=30)
    late = datetime.now(UTC) - post.expires_at  # type: ignore[operator]
    # Back within the heartbeat timeout (2 s) and a sweep (0.5 s) of the kill.
    print("killed-worker timer late by", late)
    assert timedelta(0) <= late < timedelta(seconds=5), late
