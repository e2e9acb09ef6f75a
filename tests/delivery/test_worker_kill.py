"""Exactly once under worker kills: a ``notifier worker`` SIGKILLed in the middle of a delivery
run loses no delivery and makes no second decision; every attempt carries the same id.

Real processes on Redis, a real HTTP receiver and a real SMTP server. A killed worker's jobs
come back after the heartbeat timeout (2 s here); an attempt it had started is tried again
once its lease runs out (three times the longest timeout plus 5 s: 8 s here).
"""

from __future__ import annotations

import asyncio

import pytest

from tests.delivery.conftest import close_stack, open_stack
from tests.fanout.conftest import wait_until

pytestmark = pytest.mark.single_redis


async def test_a_worker_killed_while_its_webhook_waits_for_the_answer_loses_and_duplicates_nothing(
    storage_redis_url: str,
) -> None:
    stack = await open_stack(
        "redis", storage_redis_url, webhook_timeout_s=1, email_timeout_s=1, rules={
            "default": {"webhook": '{ after_s = 0.2, until = "seen" }'}}
    )  # fmt: skip
    failed = True
    try:
        assert stack.pool is not None
        stack.webhooks.hold = asyncio.Event()
        await stack.endpoint("hooks")
        await stack.notify("bo", "ana")

        async def held() -> bool:
            return stack.webhooks.held >= 1

        await wait_until(held, within=30)
        [worker] = stack.pool.procs
        stack.pool.kill(worker)  # while the receiver holds the request open
        assert worker.returncode == -9
        await asyncio.sleep(0.5)  # the receiver's server notices the connection closed
        stack.webhooks.hold.set()  # the sender is gone: this one is not acknowledged
        stack.pool.start(1)

        async def delivered() -> bool:
            return bool(await stack.store.list("ep_hooks", limit=10, status="delivered"))

        await wait_until(delivered, within=60)
        await asyncio.sleep(2)
        posts = stack.webhooks.verified()
        assert len(posts) == 2, [p.status for p in posts]
        assert len({p.delivery_id for p in posts}) == 1  # one decision, one id
        assert list(stack.webhooks.acknowledged.values()) == [1]
        [stored] = await stack.store.list("ep_hooks", limit=10)
        assert (stored.status, stored.attempts) == ("delivered", 2)
        failed = False
    finally:
        await close_stack(stack, failed=failed)
