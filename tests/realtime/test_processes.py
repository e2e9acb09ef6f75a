"""Scale-out for real: two ``notifier serve`` processes and one ``notifier worker`` on a Redis of
their own, real websocket clients. A push reaches a user on whichever process holds their
connection, and a Redis restart in the middle of live pushes loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.e2e.cluster import Web, start_web
from tests.fanout.conftest import WorkerPool, make_config
from tests.realtime.client import Client, FeedState, http_state, summary
from tests.services import RedisServer, unavailable
from tests.web.conftest import API_KEY, ORIGIN

pytestmark = pytest.mark.timeout(180)


@dataclass
class Cluster:
    redis: RedisServer
    webs: list[Web]
    workers: WorkerPool
    logs: list[Path] = field(default_factory=list)

    def output(self) -> str:
        parts = [f"--- {w.log.name}\n{w.log.read_text(errors='replace')[-4000:]}"
                 for w in self.webs]  # fmt: skip
        return "\n".join(parts) + "\n" + self.workers.output()[-4000:]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
        return
    redis = RedisServer(binary, persistent=True)
    redis.start()
    prefix = f"rt{uuid.uuid4().hex[:8]}"
    # As deployed: jobs wait out a Redis restart in place (the fanout tests turn this off).
    _, path = make_config(redis.url, prefix, outage_wait_ms=30_000)
    webs: list[Web] = []
    workers = WorkerPool(path, threads=2)
    try:
        webs = [start_web(path, path.parent), start_web(path, path.parent)]
        workers.start(1)
        yield Cluster(redis, webs, workers)
    finally:
        for web in webs:
            web.proc.terminate()
        for web in webs:
            try:
                web.proc.wait(15)
            except subprocess.TimeoutExpired:
                web.proc.kill()
        workers.stop()
        redis.stop()
        shutil.rmtree(redis.dir, ignore_errors=True)


async def token(http: httpx.AsyncClient, user: str) -> str:
    response = await http.post("/v1/tokens", json={"user": user}, headers=KEY)
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


KEY = {"Authorization": f"Bearer {API_KEY}"}


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


async def test_a_push_reaches_the_user_on_another_process(cluster: Cluster) -> None:
    one, two = cluster.webs
    async with httpx.AsyncClient(base_url=two.http, timeout=30) as http:
        response = await http.post("/v1/follows", json={"user": "bo", "target": "ana"}, headers=KEY)
        assert response.status_code in (200, 201), response.text
        bo = Client(one.ws, await token(http, "bo"), origin=ORIGIN)
        await bo.connect()
        await bo.subscribe("notification")
        await bo.subscribe("timeline")

        activity = {"actor": "ana", "verb": "like", "object": "like:1", "target": "photo:1",
                    "to": ["notification:bo"]}  # fmt: skip
        response = await http.post("/v1/activities", json=activity, headers=KEY)
        assert response.status_code == 201, response.text
        posted = response.json()["id"]

        # Written by process 2 (the "to" feed) and by the worker (the follower's timeline),
        # announced over Redis, pushed by process 1.
        pushed = await bo.wait_for(lambda f: f["type"] == "update" and f["feed"] == "notification")
        assert pushed["groups"][0]["activities"][0]["id"] == posted
        headers = {"Authorization": f"Bearer {bo.token}"}
        counts = (await http.get("/v1/me/feeds/notification/counts", headers=headers)).json()
        assert pushed["counts"] == counts == {"unseen": 1, "unread": 1}
        timeline = await bo.wait_for(lambda f: f["type"] == "update" and f["feed"] == "timeline")
        assert [a["id"] for a in timeline["activities"]] == [posted]

        # A mark through process 2 reaches the tab on process 1.
        response = await http.post(
            "/v1/me/feeds/notification/mark", json={"all": True, "seen": True}, headers=headers
        )
        assert response.status_code == 200, response.text
        synced = await bo.wait_for(lambda f: f["type"] == "sync" and f["feed"] == "notification")
        assert synced["counts"] == response.json() == {"unseen": 0, "unread": 1}
        await bo.close()


class Resilient:
    """A widget-like client: reconnects with jittered backoff and resumes every feed."""

    def __init__(self, url: str, user: str, token: str, feeds: list[str]) -> None:
        self.client = Client(url, token, origin=ORIGIN)
        self.user = user
        self.feeds = feeds
        self.connections = 0
        self.closes: list[int] = []
        self.stopping = False

    async def run(self) -> None:
        delay = 0.05
        while not self.stopping:
            try:
                await self.client.connect()
                self.connections += 1
                for feed in self.feeds:
                    frame = await self.client.subscribe(feed)
                    if frame["type"] == "refetch":
                        await self.client.subscribe(feed)
                delay = 0.05
                while not self.stopping:
                    frame = await self.client.recv(within=3600)
                    if frame["type"] == "refetch":
                        await self.client.send({"type": "subscribe", "feed": frame["feed"]})
            except websockets.ConnectionClosed as exc:
                self.closes.append(exc.rcvd.code if exc.rcvd else 1006)
            except (OSError, TimeoutError, websockets.InvalidHandshake):
                self.closes.append(-1)
            with contextlib.suppress(Exception):
                await self.client.close()
            await asyncio.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 1.0)


async def converged(
    http: httpx.AsyncClient, clients: list[Resilient], within: float = 30
) -> list[str]:
    """Wait until every client's state equals a fresh HTTP read; the mismatches if not."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        wrong = []
        for c in clients:
            headers = {"Authorization": f"Bearer {c.client.token}"}
            for feed in c.feeds:
                items, counts = await http_state(http, feed, headers)
                state = c.client.feeds.get(feed, FeedState())
                if summary(state.newest(25)) != summary(items) or (
                    counts is not None and state.counts != counts
                ):
                    mine = [i["id"][-6:] for i in state.newest(25)]
                    theirs = [i["id"][-6:] for i in items]
                    wrong.append(
                        f"{c.user}/{feed}: client {mine} {state.counts}, http {theirs} {counts}"
                    )
        if not wrong or loop.time() > deadline:
            return wrong
        await asyncio.sleep(0.2)


async def post_until_accepted(http: httpx.AsyncClient, activity: dict[str, Any]) -> None:
    """A producer that retries through an outage (same foreign_id and time: idempotent)."""
    for _ in range(400):
        try:
            response = await http.post("/v1/activities", json=activity, headers=KEY)
        except httpx.TransportError:
            response = None
        if response is not None and response.status_code in (200, 201):
            return
        assert response is None or response.status_code == 503, response.text
        await asyncio.sleep(0.05)
    raise AssertionError(f"never accepted: {activity}")


async def test_a_redis_restart_during_live_pushes_loses_nothing(cluster: Cluster) -> None:
    one, two = cluster.webs
    users = [f"u{i}" for i in range(6)]
    async with httpx.AsyncClient(base_url=two.http, timeout=30) as http:
        for user in users:
            response = await http.post(
                "/v1/follows", json={"user": user, "target": "ana"}, headers=KEY
            )
            assert response.status_code in (200, 201), response.text
        feeds = ["notification", "timeline"]
        clients = [
            Resilient((one if i % 2 else two).ws, user, await token(http, user), feeds)
            for i, user in enumerate(users)
        ]
        tasks = [asyncio.create_task(c.run()) for c in clients]
        try:
            for _ in range(200):
                if all(c.connections for c in clients):
                    break
                await asyncio.sleep(0.05)

            async def produce(n: int) -> None:
                target = users[n % len(users)]
                await post_until_accepted(http, {
                    "actor": "ana" if n % 3 == 0 else f"fan{n}",
                    "verb": "like", "object": f"like:{n}", "target": f"photo:{n % 4}",
                    "foreign_id": f"like:{n}", "time": f"2026-11-29T10:{n // 60:02d}:{n % 60:02d}Z",
                    "to": [f"notification:{target}"],
                })  # fmt: skip

            async def restart() -> None:
                await asyncio.sleep(0.4)
                await asyncio.to_thread(cluster.redis.stop)
                await asyncio.sleep(0.5)
                await asyncio.to_thread(cluster.redis.start)

            restarter = asyncio.create_task(restart())
            for n in range(60):
                await produce(n)
                if n % 7 == 0:  # marks from "another device" while pushes flow
                    headers = {"Authorization": f"Bearer {clients[n % 6].client.token}"}
                    mark = {"all": True, "seen": True}
                    with contextlib.suppress(httpx.TransportError):
                        await http.post(
                            "/v1/me/feeds/notification/mark", json=mark, headers=headers
                        )
                await asyncio.sleep(0.02)
            await restarter

            async with httpx.AsyncClient(base_url=one.http, timeout=30) as other:
                # Fanout is done when ana's 20 activities are in every follower's timeline.
                for _ in range(300):
                    timelines = [
                        await http_state(other, "timeline", bearer(c.client.token)) for c in clients
                    ]
                    if all(len(items) == 20 for items, _ in timelines):
                        break
                    await asyncio.sleep(0.1)
                lengths = [len(items) for items, _ in timelines]
                assert lengths == [20] * len(users), f"{lengths}\n{cluster.output()}"
                wrong = await converged(other, clients)
            assert not wrong, f"{wrong}\n{cluster.output()}"
            total = sum(len(c.client.feeds["timeline"].items) for c in clients)
            assert total == 20 * len(users)
            print("closes seen by clients:", [c.closes for c in clients])
        finally:
            for c in clients:
                c.stopping = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
