"""A Redis restart under hundreds of open websockets: the web process re-subscribes and
resyncs its connections in place. None is closed (no 1013 for a blip), and what was written
while the pub/sub link was down reaches every client."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import websockets

from notifier.storage.redis import RedisStorage
from tests.realtime.client import Client, http_window, summary
from tests.realtime.conftest import Live, LiveFactory
from tests.services import RedisServer, restartable_redis

pytestmark = [pytest.mark.timeout(180), pytest.mark.single_redis]

USERS = 300


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with restartable_redis() as server:
        yield server


@pytest.fixture
async def storage(own_redis: RedisServer) -> AsyncIterator[RedisStorage]:
    """This module's servers run on a Redis of their own, which the tests restart."""
    store = RedisStorage.from_url(own_redis.url, prefix=f"r{uuid.uuid4().hex[:8]}")
    yield store
    await store.close()


async def drain(client: Client, closes: list[int]) -> None:
    try:
        while True:
            await client.recv(within=3600)
    except websockets.ConnectionClosed as exc:
        closes.append(exc.rcvd.code if exc.rcvd else 1006)


async def test_a_redis_restart_resyncs_every_connection_in_place(
    live_factory: LiveFactory, own_redis: RedisServer
) -> None:
    live: Live = await live_factory()
    users = [f"u{i}" for i in range(USERS)]
    clients = [live.client(u) for u in users]
    for client in clients:
        await client.connect()
        await client.subscribe("notification", limit=25)
    closes: list[int] = []
    readers = [asyncio.create_task(drain(c, closes)) for c in clients]

    async def like(n: int, user: str) -> None:
        body = {"actor": "ana", "verb": "like", "object": f"like:{n}", "target": f"photo:{n}",
                "to": [f"notification:{user}"]}  # fmt: skip
        for _ in range(200):  # the producer retries through the restart (idempotent: no)
            response = await live.http.post("/v1/activities", json=body,
                                            headers=live.server_headers())  # fmt: skip
            if response.status_code == 201:
                return
            assert response.status_code == 503, response.text
            await asyncio.sleep(0.05)
        raise AssertionError("never accepted")

    await asyncio.gather(*(like(0, u) for u in users[:50]))
    hub = live.services.realtime.hub
    links_before = hub.connections  # type: ignore[attr-defined]
    await asyncio.to_thread(own_redis.stop)
    await asyncio.to_thread(own_redis.start)
    # Written while the web process's pub/sub link may still be down: no event carries
    # these to the clients; only the resync after the link is back can.
    await asyncio.gather(*(like(1, u) for u in users))
    for _ in range(300):
        if hub.connections > links_before:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.05)
    assert hub.connections > links_before  # type: ignore[attr-defined]
    await asyncio.gather(*(like(2, u) for u in users[::3]))  # and after, live

    async def converged(client: Client, user: str) -> bool:
        state = client.feeds["notification"]
        items, counts = await http_window(
            live.http, "notification", live.user_headers(user), state.oldest
        )
        return summary(state.newest(100)) == summary(items) and state.counts == counts

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    pending = list(zip(clients, users, strict=True))
    while pending and loop.time() < deadline:
        pending = [(c, u) for c, u in pending if not await converged(c, u)]
        await asyncio.sleep(0.2)
    assert not pending, f"{len(pending)} clients differ from storage, e.g. {pending[0][1]}"
    assert closes == [], f"connections closed: {closes}"
    assert len(live.services.realtime.connections) == USERS
    for reader in readers:
        reader.cancel()
    for client in clients:
        await client.close()


async def test_requests_while_redis_is_down_get_503_and_log_no_error(
    live_factory: LiveFactory, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Under uvicorn, as served: a 503 with a JSON body and Retry-After, logged as one
    WARNING line, not as an ERROR with a traceback ("Exception in ASGI application") per
    request for as long as Redis is away."""
    live: Live = await live_factory()
    uvicorn_log = logging.getLogger("uvicorn.error")  # does not propagate to caplog's root
    uvicorn_log.addHandler(caplog.handler)
    await asyncio.to_thread(own_redis.stop)
    body = {"actor": "ana", "verb": "like", "object": "like:1", "target": "photo:1"}
    try:
        for _ in range(3):
            response = await live.http.post("/v1/activities", json=body,
                                            headers=live.server_headers())  # fmt: skip
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "unavailable"
            assert response.headers["Retry-After"] == "1"
            page = await live.http.get("/v1/me/feeds/notification", headers=live.user_headers("bo"))
            assert page.status_code == 503, page.text
    finally:
        uvicorn_log.removeHandler(caplog.handler)
        await asyncio.to_thread(own_redis.start)
    errors = [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert errors == []
    assert any("backend unavailable" in r.getMessage() for r in caplog.records)
