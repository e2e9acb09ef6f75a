"""The per-user connection cap in Redis: two caps on one Redis (two web processes' worth)
admit a user's connections up to the cap between them; a cap that stops refreshing (its
process died) frees its slots after ``slot_ttl``; slots Redis lost come back with the next
refresh; a Redis that is down admits. Real redis-servers."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from notifier.failopen import FailOpen
from notifier.realtime.connection_cap import SharedCap, Slot
from notifier.storage.redis_client import AnyRedis, redis_client

pytestmark = pytest.mark.timeout(60)

MakeCap = Callable[..., SharedCap]


@pytest.fixture
async def make_cap(storage_redis_url: str) -> AsyncIterator[MakeCap]:
    """Caps on the session's Redis, each with a client of its own (as a process has), all
    under one key prefix of the test's own."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    made: list[tuple[SharedCap, AnyRedis]] = []

    def make(max_per_user: int = 3, slot_ttl: float = 60.0) -> SharedCap:
        client = redis_client(storage_redis_url)
        cap = SharedCap(client, prefix=prefix, max_per_user=max_per_user, slot_ttl=slot_ttl)
        made.append((cap, client))
        return cap

    yield make
    for cap, client in made:
        await cap.close()
        await client.aclose()


async def admit_all(cap: SharedCap, user: str, n: int) -> list[Slot | None]:
    return [await cap.admit(user) for _ in range(n)]


async def wait_for(condition: Callable[[], Awaitable[bool]], within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"not within {within}s"
        await asyncio.sleep(0.05)


async def test_a_users_connections_over_two_processes_are_capped(make_cap: MakeCap) -> None:
    one, two = make_cap(max_per_user=3), make_cap(max_per_user=3)
    first = await admit_all(one, "bo", 2)
    second = await admit_all(two, "bo", 3)
    assert all(first) and [s is not None for s in second] == [True, False, False]
    assert await one.admit("bo") is None
    assert await one.admit("cy") is not None  # the cap is per user
    slot = first[0]
    assert slot is not None
    await one.release(slot)  # a closed connection frees its place at once, everywhere
    assert await two.admit("bo") is not None
    assert await one.admit("bo") is None


async def test_concurrent_admissions_never_pass_the_cap(make_cap: MakeCap) -> None:
    caps = [make_cap(max_per_user=5) for _ in range(4)]
    slots = await asyncio.gather(*(caps[n % 4].admit("bo") for n in range(40)))
    assert sum(s is not None for s in slots) == 5


async def test_a_dead_processs_slots_expire_and_a_live_ones_are_kept(
    make_cap: MakeCap, storage_redis_url: str
) -> None:
    alive, dying, other = (make_cap(max_per_user=4, slot_ttl=2.0) for _ in range(3))
    assert all(await admit_all(alive, "bo", 2))
    assert all(await admit_all(dying, "bo", 2))
    # The dying process stops refreshing (as one killed with SIGKILL does) without giving
    # anything back.
    assert dying._refresher is not None
    dying._refresher.cancel()
    dying.held.clear()
    assert await other.admit("bo") is None

    async def admitted() -> bool:
        return await other.admit("bo") is not None

    # Within a few slot_ttl the dead slots are gone; the live process's are refreshed.
    await wait_for(admitted, within=10)
    assert await other.admit("bo") is not None
    assert await other.admit("bo") is None  # 2 alive + 2 new: the live ones still count
    client = redis_client(storage_redis_url)
    members = await client.zrange(alive.key("bo"), 0, -1)
    assert sum(m.decode().startswith(alive._process) for m in members) == 2
    await client.aclose()


async def test_slots_redis_lost_come_back_with_the_next_refresh(
    make_cap: MakeCap, storage_redis_url: str
) -> None:
    cap, other = make_cap(max_per_user=3), make_cap(max_per_user=3)
    assert all(await admit_all(cap, "bo", 3))
    client = redis_client(storage_redis_url)
    await client.delete(cap.key("bo"))  # a restart without persistence, a failover
    await cap.refresh()
    assert await client.zcard(cap.key("bo")) == 3
    assert 0 < await client.pttl(cap.key("bo")) <= 60_000  # the set goes with its last slot
    assert await other.admit("bo") is None
    await client.aclose()


async def test_a_redis_that_is_down_admits_and_holds_the_slot_locally() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = redis_client(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.3)
    cap = SharedCap(
        client, prefix="t", max_per_user=1, slot_ttl=60, guard=FailOpen("cap", timeout=0.3)
    )
    slots = await admit_all(cap, "bo", 3)
    assert all(slots)  # fails open: the cap does not hold while Redis is away
    assert len(cap.held["bo"]) == 3  # written by the next refresh that reaches Redis
    for slot in slots:
        assert slot is not None
        await cap.release(slot)
    assert "bo" not in cap.held
    await cap.close()
    await client.aclose()


async def test_slots_released_at_once_all_leave_redis(
    make_cap: MakeCap, storage_redis_url: str
) -> None:
    cap, other = make_cap(max_per_user=2), make_cap(max_per_user=2)
    users = [f"u{n}" for n in range(100)]
    slots = [s for u in users for s in await admit_all(cap, u, 2)]
    assert all(slots)
    # A stopping process closes every connection at once: the releases leave in batches.
    await asyncio.gather(*(cap.release(s) for s in slots if s is not None))
    assert cap.held == {}
    client = redis_client(storage_redis_url)
    assert [await client.exists(cap.key(u)) for u in users] == [0] * len(users)
    await client.aclose()
    assert all([await other.admit(u) for u in users])
