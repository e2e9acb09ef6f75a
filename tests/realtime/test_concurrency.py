"""Many connections of one process receiving the same changes at the same moment.

A fanout hands one change to every follower connected to a process in one go, and their frames
need the same activity bodies, which are not cached yet (they were just written): every
connection asks for the same frame, and one storage read must serve them all. These tests
drive that path with real websocket clients on Redis (real round trips, so the shared reads
really wait), with clients that vanish and connections that are cancelled in the middle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import pytest
import websockets

from tests.realtime.client import Client, FeedState, http_state, summary
from tests.realtime.conftest import Live

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.parametrize("storage_factory", ["redis"], indirect=True),
]


def post(n: int, users: list[str]) -> dict[str, Any]:
    return {
        "actor": "star",
        "verb": "post",
        "object": f"post:{n}",
        "to": [f"timeline:{u}" for u in users],
    }


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


async def test_followers_on_one_process_all_get_every_post_of_the_same_user(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    """Six followers on one process, 40 posts: every socket stays open and gets all 40 (the
    six are fewer than a shared fanout message, so each connection builds the frame itself,
    all of them waiting on the same read)."""
    users = [f"f{i}" for i in range(6)]
    clients = [live.client(u) for u in users]
    for client in clients:
        await client.connect()
        await client.subscribe("timeline", limit=100)
    posted = [(await live.post(**post(n, users)))["id"] for n in range(40)]
    for client in clients:
        await client.wait_for(lambda f, c=client: len(c.feeds["timeline"].items) == 40, within=20)
        assert sorted(client.feeds["timeline"].items) == sorted(posted)
        assert client.ws is not None and client.ws.close_code is None
    assert not errors_logged(caplog)
    for client in clients:
        await client.close()


class Churner:
    """A follower whose connection comes and goes: it resumes from what it holds, and
    sometimes vanishes without a close handshake (the server finds out in the middle of
    sending to it)."""

    def __init__(self, live: Live, user: str, rng: random.Random) -> None:
        self.live = live
        self.user = user
        self.rng = rng
        self.client = live.client(user)
        self.closes: list[int] = []
        self.stopping = False

    async def run(self) -> None:
        while not self.stopping:
            try:
                await self.client.connect()
                state = self.client.feeds.get("timeline")
                frame = await self.client.subscribe("timeline", limit=100)
                if frame["type"] == "refetch" or (state is not None and state.position is None):
                    self.client.feeds["timeline"] = FeedState()
                    await self.client.subscribe("timeline", limit=100)
                lifetime = self.rng.uniform(0.05, 1.5)
                loop = asyncio.get_running_loop()
                until = loop.time() + lifetime
                while not self.stopping and loop.time() < until:
                    try:
                        await self.client.recv(within=max(0.01, until - loop.time()))
                    except TimeoutError:
                        break
            except websockets.ConnectionClosed as exc:
                self.closes.append(exc.rcvd.code if exc.rcvd else 1006)
            ws, self.client.ws = self.client.ws, None
            if ws is not None:
                if self.rng.random() < 0.5:
                    ws.transport.abort()  # gone, no closing handshake
                else:
                    await ws.close()
            await asyncio.sleep(self.rng.uniform(0, 0.2))


async def test_hundreds_of_connections_share_reads_through_disconnects_and_cancellations(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    """300 connections on one process get the same posts while 60 of them keep dropping (half
    without a closing handshake) and resuming: no connection fails, and every client ends with
    exactly what an HTTP read of its feed shows."""
    rng = random.Random(1311)
    steady_users = [f"s{i}" for i in range(240)]
    churn_users = [f"c{i}" for i in range(60)]
    everyone = steady_users + churn_users
    steady = [live.client(u) for u in steady_users]
    for client in steady:
        await client.connect()
        await client.subscribe("timeline", limit=100)
    churners = [Churner(live, u, rng) for u in churn_users]
    tasks = [asyncio.create_task(c.run()) for c in churners]
    readers = [asyncio.create_task(drain(c)) for c in steady]
    try:
        for n in range(30):
            # Audiences of every size: under and over a shared fanout message.
            audience = rng.sample(everyone, rng.choice([3, 7, 20, 100]))
            await live.post(**{**post(n, audience[:100])})
            if n % 3 == 0:
                # The same post to the steady half too, in one message: one shared frame.
                await live.post(**post(1000 + n, steady_users[:100]))
            await asyncio.sleep(rng.uniform(0, 0.05))
    finally:
        for churner in churners:
            churner.stopping = True
        await asyncio.gather(*tasks, return_exceptions=True)
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)

    # Every steady connection is still open and converges on what storage holds.
    for client in steady:
        assert client.ws is not None and client.ws.close_code is None, client.ws
        await converge(live, client)
    for churner in churners:
        assert 1011 not in churner.closes, (churner.user, churner.closes)
    assert not errors_logged(caplog), errors_logged(caplog)
    for client in steady:
        await client.close()


async def drain(client: Client) -> None:
    while True:
        try:
            await client.recv(within=3600)
        except websockets.ConnectionClosed:
            return


async def converge(live: Live, client: Client) -> None:
    """Wait for ``client``'s timeline to equal a fresh HTTP read (frames still arriving)."""
    user = client_user(live, client)
    for _ in range(100):
        items, _ = await http_state(live.http, "timeline", live.user_headers(user), limit=100)
        if summary(client.feeds["timeline"].newest(100)) == summary(items):
            return
        with contextlib.suppress(TimeoutError):
            await client.recv(within=0.05)
    assert summary(client.feeds["timeline"].newest(100)) == summary(items)


def client_user(live: Live, client: Client) -> str:
    claims = live.services.tokens.verify(client.token)
    return claims.user
