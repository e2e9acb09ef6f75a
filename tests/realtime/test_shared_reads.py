"""One storage read for many waiters (ActivityCache, FrameCache), with waiters cancelled and
reads failing in the middle: the others still get their result, and nothing is logged as an
unretrieved error."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from notifier.bodies import ActivityCache
from notifier.model import Activity
from notifier.realtime.sync import FrameCache
from notifier.storage.memory import MemoryStorage


class GatedStorage(MemoryStorage):
    """Memory storage whose body reads wait for the test to open a gate (or fail)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.reads = 0

    async def get_activities(self, ids: Sequence[str]) -> dict[str, Activity]:
        self.reads += 1
        await self.gate
        return await super().get_activities(ids)


def activity(n: int) -> Activity:
    return Activity(id=f"{n:026x}", actor="ana", verb="post", object=f"post:{n}",
                    time=datetime(2026, 11, 30, tzinfo=UTC))  # fmt: skip


async def started(tasks: list[asyncio.Task[object]]) -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_waiters_share_one_read_and_cancelled_ones_do_not_stop_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = GatedStorage()
    await storage.put_activities([activity(1), activity(2)])
    cache = ActivityCache(storage)
    tasks = [asyncio.create_task(cache.get([activity(1).id, activity(2).id])) for _ in range(50)]
    await started(tasks)  # type: ignore[arg-type]
    for task in tasks[:25]:  # the first one, which started the read, among them
        task.cancel()
    await asyncio.sleep(0)
    storage.gate.set_result(None)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert storage.reads == 1
    assert all(isinstance(r, asyncio.CancelledError) for r in results[:25])
    assert all(r == {activity(1).id: activity(1), activity(2).id: activity(2)}
               for r in results[25:])  # fmt: skip
    # Cached for the next reader: no storage read.
    assert await cache.get([activity(1).id]) == {activity(1).id: activity(1)}
    assert storage.reads == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_failed_read_reaches_every_waiter_and_the_next_call_reads_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = GatedStorage()
    await storage.put_activities([activity(1)])
    cache = ActivityCache(storage)
    tasks = [asyncio.create_task(cache.get([activity(1).id])) for _ in range(10)]
    await started(tasks)  # type: ignore[arg-type]
    tasks[0].cancel()
    storage.gate.set_exception(ConnectionError("redis went away"))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert all(isinstance(r, ConnectionError) for r in results[1:])
    storage.gate = asyncio.get_running_loop().create_future()
    storage.gate.set_result(None)
    assert await cache.get([activity(1).id]) == {activity(1).id: activity(1)}
    assert storage.reads == 2


async def test_a_shared_frame_outlives_every_waiter_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    frames = FrameCache()
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    builds = 0

    async def build() -> str:
        nonlocal builds
        builds += 1
        return await gate

    key = ("timeline", ("a",))
    tasks = [asyncio.create_task(frames.shared(key, build)) for _ in range(20)]
    await started(tasks)  # type: ignore[arg-type]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    gate.set_result('{"type":"update"}')
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    ready = frames.ready(key)
    assert builds == 1 and ready is not None and ready.text == '{"type":"update"}'


async def test_a_failed_build_with_no_one_left_waiting_is_not_logged_as_unretrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    frames = FrameCache()
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def build() -> str:
        return await gate

    key = ("timeline", ("b",))
    task = asyncio.create_task(frames.shared(key, build))
    await started([task])  # type: ignore[list-item]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    gate.set_exception(ConnectionError("gone"))
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()  # an unretrieved task exception is reported when the task is collected
    assert frames.ready(key) is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
