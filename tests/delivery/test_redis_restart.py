"""A Redis restart in the middle of a delivery run: the storage, the delivery store and the
broker are one redis-server (appendonly, fsync always), stopped for 1.5 s while webhooks and
digests go out from two ``notifier worker`` processes, then started again. Jobs wait the
outage out in place, as deployed (``fanout.outage_wait_ms``). Afterwards every (group,
endpoint) was decided once and acknowledged under its id, and every addressed user got one
digest: nothing lost to the outage, nothing decided twice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from notifier.preferences import Preferences
from tests.delivery.conftest import close_stack, delivered_exactly_once, open_stack
from tests.services import RedisServer, restartable_redis

pytestmark = pytest.mark.single_redis


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with restartable_redis() as server:
        yield server


async def test_a_redis_restart_during_a_delivery_run_loses_and_duplicates_nothing(
    redis: RedisServer,
) -> None:
    users = [f"u{n:02d}" for n in range(40)]
    addressed = users[::2]
    stack = await open_stack(
        "redis", redis.url, webhook_timeout_s=1, email_timeout_s=1, window_s=2.0,
        fanout={"outage_wait_ms": 30_000},
        rules={"default": {"webhook": '{ after_s = 0.5, until = "seen" }',
                           "email": '{ after_s = 0.5, until = "seen" }'}},
    )  # fmt: skip
    failed = True
    try:
        assert stack.pool is not None
        stack.pool.start(1)  # two workers
        stack.webhooks.delay = 0.05
        await stack.endpoint("a")
        for user in addressed:
            await stack.manager.storage.put_preferences(
                user, Preferences(email=f"{user}@example.com")
            )
        for user in users:
            await stack.notify(user, "ana")
        await asyncio.sleep(0.6)  # the first escalations are running
        await asyncio.to_thread(redis.stop)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(redis.start)

        await delivered_exactly_once(stack, "a", users, addressed, within=90)
        print(
            f"\nwebhooks {len(users)} (POSTs {len(stack.webhooks.received)}); digests "
            f"{len(addressed)} (messages {len(stack.smtp.messages)})"
        )
        failed = False
    finally:
        await close_stack(stack, failed=failed)
