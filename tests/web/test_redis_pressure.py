"""The HTTP API on a Redis that is busy or was just restarted: callers wait for a connection
instead of failing, a pool that stays exhausted says "busy" (not "unreachable"), and the
connections a restart killed are replaced on their next command, not reported as an outage."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from notifier.storage.redis import RedisStorage
from notifier.web.app import create_app
from tests.services import RedisServer, unavailable
from tests.web.conftest import API_KEY, close_services, make_services, server_settings

pytestmark = pytest.mark.timeout(120)

Reader = Callable[[int], Awaitable[list[int]]]


async def app_on(storage: RedisStorage) -> AsyncIterator[tuple[httpx.AsyncClient, Reader]]:
    services = make_services(storage, server_settings(NOTIFIER_USER_RATE="100000",
                                                      NOTIFIER_USER_BURST="100000"))  # fmt: skip
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        headers = {"Authorization": f"Bearer {services.tokens.issue('bo', 600)[0]}"}
        body = {"actor": "ana", "verb": "like", "object": "like:1", "target": "photo:1",
                "to": ["notification:bo"]}  # fmt: skip
        response = await http.post("/v1/activities", json=body,
                                   headers={"Authorization": f"Bearer {API_KEY}"})  # fmt: skip
        assert response.status_code == 201, response.text

        async def read(concurrent: int) -> list[int]:
            responses = await asyncio.gather(*(
                http.get("/v1/me/feeds/notification", headers=headers)
                for _ in range(concurrent)
            ))  # fmt: skip
            return [r.status_code for r in responses]

        yield http, read
    await close_services(services)
    await storage.close()


def statuses(codes: list[int]) -> dict[int, int]:
    return {code: codes.count(code) for code in sorted(set(codes))}


async def test_concurrent_readers_wait_for_a_free_connection(redis_url: str) -> None:
    storage = RedisStorage.from_url(redis_url, prefix=f"p{uuid.uuid4().hex[:8]}", pool_size=5)
    async for _, read in app_on(storage):
        assert statuses(await read(200)) == {200: 200}
        assert len(storage.client.connection_pool._in_use_connections) == 0
        assert storage.client.connection_pool.max_connections == 5


async def test_a_pool_that_stays_exhausted_answers_busy_not_unreachable(redis_url: str) -> None:
    storage = RedisStorage.from_url(
        redis_url, prefix=f"p{uuid.uuid4().hex[:8]}", pool_size=1, pool_timeout=0.2
    )
    async for http, _ in app_on(storage):
        # The only connection is taken for a second by a blocking command.
        hog = asyncio.create_task(storage.client.blpop([f"{storage.prefix}:nothing"], timeout=1))
        await asyncio.sleep(0.05)
        issued = await http.post(
            "/v1/tokens", json={"user": "bo"}, headers={"Authorization": f"Bearer {API_KEY}"}
        )
        response = await http.get(
            "/v1/me/feeds/notification",
            headers={"Authorization": f"Bearer {issued.json()['token']}"},
        )
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "busy"
        assert response.headers["Retry-After"] == "1"
        await hog


@pytest.fixture
def own_redis() -> Any:
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(binary)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


async def test_reads_after_a_redis_restart_succeed_on_fresh_connections(
    own_redis: RedisServer,
) -> None:
    storage = RedisStorage.from_url(own_redis.url, prefix="restart")
    async for _, read in app_on(storage):
        assert statuses(await read(50)) == {200: 50}  # 50 pooled connections, all used
        await asyncio.to_thread(own_redis.stop)
        await asyncio.to_thread(own_redis.start)
        # Every pooled connection is dead now; the feed itself is gone too (no persistence
        # here), which is not what this test is about: the reads must answer, not fail.
        assert statuses(await read(50)) == {200: 50}
        await asyncio.sleep(1.0)  # a mostly idle server, later
        assert statuses(await read(50)) == {200: 50}
