"""Rate limits kept in Redis: two limiters on one Redis (two web processes' worth) share every
caller's bucket; an idle bucket expires; a Redis that is down or hangs lets checks through,
fast, with one warning. Real redis-servers (the session's, and private ones)."""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from notifier.failopen import FailOpen
from notifier.storage.redis_client import AnyRedis, redis_client
from notifier.web.ratelimit import RateLimited
from notifier.web.settings import RateLimit
from notifier.web.shared_limits import SharedRateLimiter

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def clients(storage_redis_url: str) -> AsyncIterator[tuple[AnyRedis, AnyRedis]]:
    """Two clients of the session's Redis, as two web processes have."""
    one, two = redis_client(storage_redis_url), redis_client(storage_redis_url)
    yield one, two
    await one.aclose()
    await two.aclose()


def pair(
    clients: tuple[AnyRedis, AnyRedis], limit: RateLimit, name: str = "user"
) -> tuple[SharedRateLimiter, SharedRateLimiter]:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    one, two = clients
    return (
        SharedRateLimiter(one, prefix=prefix, name=name, limit=limit),
        SharedRateLimiter(two, prefix=prefix, name=name, limit=limit),
    )


async def test_a_callers_burst_is_shared_by_limiters_on_one_redis(
    clients: tuple[AnyRedis, AnyRedis],
) -> None:
    one, two = pair(clients, RateLimit(rate=0.01, burst=6))  # no refill within the test
    for n in range(6):
        await (one if n % 2 else two).hit("bo")
    for limiter in (one, two):
        with pytest.raises(RateLimited) as refused:
            await limiter.hit("bo")
        assert 90 <= refused.value.retry_after <= 100  # one token at 0.01/s, less the refill
    await one.hit("cy")  # every caller has a bucket of their own
    await two.check("cy")


async def test_check_takes_nothing_and_spend_never_refuses(
    clients: tuple[AnyRedis, AnyRedis],
) -> None:
    one, two = pair(clients, RateLimit(rate=0.1, burst=3), name="auth")
    for _ in range(10):
        await one.check("10.0.0.1")
    for _ in range(5):  # two past the budget: counted where there is a token, never raised
        await two.spend("10.0.0.1")
    with pytest.raises(RateLimited) as refused:
        await one.check("10.0.0.1")
    assert 5 <= refused.value.retry_after <= 10  # one token at 0.1/s, less the refill
    with pytest.raises(RateLimited):
        await two.hit("10.0.0.1")


async def test_a_bucket_expires_when_it_would_be_full_again(
    clients: tuple[AnyRedis, AnyRedis],
) -> None:
    one, _ = pair(clients, RateLimit(rate=2.0, burst=10), name="key")
    client = clients[0]
    await one.hit("an-api-key-0123456789")
    key = one.key("an-api-key-0123456789")
    assert "an-api-key" not in key  # callers are hashed: no credential in a key name
    assert key.endswith("}") and ":rl:{key:" in key
    # One token taken at 2 tokens/s: full again (and gone) in 0.5 s.
    assert 0 < await client.pttl(key) <= 500
    for _ in range(4):
        await one.hit("an-api-key-0123456789")
    assert 1000 < await client.pttl(key) <= 2500  # five taken: 2.5 s, less what came back
    await one.check("an-api-key-0123456789")  # a check writes nothing
    assert await client.pttl(key) <= 2500
    assert await client.exists(one.key("nobody")) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung Redis)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield int(server.getsockname()[1])
    server.close()


@pytest.mark.parametrize("kind", ["down", "hung"])
async def test_a_redis_that_is_down_or_hangs_lets_checks_through_fast_with_one_warning(
    kind: str, silent_server: int, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port() if kind == "down" else silent_server
    client = redis_client(
        f"redis://127.0.0.1:{port}/0", socket_timeout=0.3, socket_connect_timeout=0.3
    )
    guard = FailOpen("rate limits", timeout=0.3, cooldown=60)
    limiter = SharedRateLimiter(
        client, prefix="t", name="user", limit=RateLimit(rate=0.01, burst=1), guard=guard
    )
    caplog.set_level(logging.WARNING, logger="notifier.failopen")
    started = time.monotonic()
    for _ in range(20):  # past the burst of 1: refused, were Redis there
        await limiter.hit("bo")
    await limiter.check("bo")
    elapsed = time.monotonic() - started
    # The first check waits out the deadline at most; the rest skip Redis (cooldown).
    assert elapsed < 5, elapsed
    warnings = [r for r in caplog.records if r.name == "notifier.failopen"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "failing open" in warnings[0].getMessage()
    assert guard.passed == 20  # counted for the next warning
    await client.aclose()


async def test_checks_use_redis_again_after_the_cooldown(
    clients: tuple[AnyRedis, AnyRedis],
) -> None:
    now = [0.0]
    guard = FailOpen("rate limits", cooldown=1.0, clock=lambda: now[0])
    one, _ = pair(clients, RateLimit(rate=0.01, burst=1))
    one.guard = guard

    async def broken() -> int:
        raise ConnectionError("connection refused")

    assert await guard(broken, 0) == 0
    await one.hit("bo")  # in the cooldown: not counted
    await one.hit("bo")
    now[0] = 1.5
    await one.hit("bo")  # Redis again: the one token
    with pytest.raises(RateLimited):
        await one.hit("bo")
