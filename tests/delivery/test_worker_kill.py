"""Exactly once under worker kills: a ``notifier worker`` SIGKILLed in the middle of a delivery
run loses no delivery and makes no second decision; every attempt carries the same id.

Real processes on Redis, a real HTTP receiver and a real SMTP server. A killed worker's jobs
come back after the heartbeat timeout (2 s here); an attempt it had started is tried again
once its lease runs out (three times the longest timeout plus 5 s: 8 s here).
"""

from __future__ import annotations

import asyncio
import random

import pytest

from notifier.preferences import Preferences
from tests.delivery.conftest import close_stack, delivered_exactly_once, open_stack, storage_for
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


@pytest.mark.parametrize("backend", ["redis", "cassandra"])
async def test_workers_killed_again_and_again_during_a_delivery_run_lose_and_duplicate_nothing(
    request: pytest.FixtureRequest, backend: str
) -> None:
    """60 users' groups escalate to two endpoints, and half of the users get email digests,
    while workers are SIGKILLed at random moments. At the end every (group, endpoint) was
    acknowledged under its one id and every addressed user got one digest (one Message-ID)
    holding their group: nothing lost, and nothing decided twice. On Redis (storage, store
    and broker on one server) and on Cassandra (its compare-and-sets decide; the broker on
    Redis)."""
    users = [f"u{n:02d}" for n in range(60)]
    addressed = users[::2]
    url, broker = storage_for(request, backend)
    stack = await open_stack(
        backend, url, broker, webhook_timeout_s=1, email_timeout_s=1, window_s=2.0,
        rules={"default": {"webhook": '{ after_s = 0.5, until = "seen" }',
                           "email": '{ after_s = 0.5, until = "seen" }'}},
    )  # fmt: skip
    failed = True
    try:
        pool = stack.pool
        assert pool is not None
        pool.start(1)  # two workers
        stack.webhooks.delay = 0.05  # attempts stay in flight a while: kills land mid-POST
        for name in ("a", "b"):
            await stack.endpoint(name)
        for user in addressed:
            await stack.manager.storage.put_preferences(
                user, Preferences(email=f"{user}@example.com")
            )
        for user in users:
            await stack.notify(user, "ana")
        rng = random.Random(1812)
        kills = 0
        until = asyncio.get_running_loop().time() + 6
        while asyncio.get_running_loop().time() < until:
            await asyncio.sleep(rng.uniform(0.2, 0.7))
            alive = [p for p in pool.procs if p.poll() is None]
            pool.kill(rng.choice(alive))
            kills += 1
            pool.start(1)

        decided = await delivered_exactly_once(stack, "ab", users, addressed, within=120)
        # Attempts in flight when their worker died reached the receiver and are sent again
        # under the same id once their lease runs out: what receivers dedupe by webhook-id.
        repeats = sum(n - 1 for n in stack.webhooks.acknowledged.values())
        attempts = sum(d.attempts for d in decided)
        print(
            f"\nworker kills: {kills}; webhooks {2 * len(users)} (attempts {attempts}, "
            f"POSTs {len(stack.webhooks.received)}, acknowledged again under the same id "
            f"{repeats}); digests {len(addressed)} (messages received "
            f"{len(stack.smtp.messages)})"
        )
        failed = False
    finally:
        await close_stack(stack, failed=failed)
