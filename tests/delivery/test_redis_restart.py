"""A Redis restart in the middle of a delivery run: the storage, the delivery store and the
broker are one redis-server (appendonly, fsync always), stopped for 1.5 s while webhooks and
digests go out from two ``notifier worker`` processes, then started again. Jobs wait the
outage out in place, as deployed (``fanout.outage_wait_ms``). Afterwards every (group,
endpoint) was decided once and acknowledged under its id, and every addressed user got one
digest: nothing lost to the outage, nothing decided twice."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from notifier.preferences import Preferences
from tests.delivery.conftest import close_stack, open_stack, undelivered
from tests.fanout.conftest import wait_until
from tests.services import RedisServer, unavailable

pytestmark = pytest.mark.single_redis


async def test_a_redis_restart_during_a_delivery_run_loses_and_duplicates_nothing() -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
        return
    redis = RedisServer(binary, persistent=True)
    redis.start()
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

        async def all_delivered() -> bool:
            try:
                hooks = await stack.store.list("ep_a", limit=500, status="delivered")
                digests = [await stack.store.list(u, limit=10, status="delivered")
                           for u in addressed]  # fmt: skip
            except ConnectionError:
                return False
            return len(hooks) == len(users) and all(digests)

        try:
            await wait_until(all_delivered, within=90, every=0.5)
        except AssertionError:
            print(await undelivered(stack, "a", users, addressed))
            raise
        await asyncio.sleep(3)  # a window more: no late second digest
        decided = await stack.store.list("ep_a", limit=500)
        assert sorted(d.user for d in decided) == users  # one per user: no twin
        acknowledged = {r.delivery_id for r in stack.webhooks.verified("/a")
                        if 200 <= r.status < 300}  # fmt: skip
        assert acknowledged == {d.id for d in decided}
        mails: dict[str, set[str]] = {}
        for received in stack.smtp.messages:
            mails.setdefault(received.rcpts[0], set()).add(received.message["Message-ID"])
        assert {rcpt: len(ids) for rcpt, ids in mails.items()} == {
            f"{u}@example.com": 1 for u in addressed
        }
        print(
            f"\nwebhooks {len(users)} (POSTs {len(stack.webhooks.received)}); digests "
            f"{len(addressed)} (messages {len(stack.smtp.messages)})"
        )
        failed = False
    finally:
        await close_stack(stack, failed=failed)
        redis.stop()
