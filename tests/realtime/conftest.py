"""A live server in the test's own event loop: the real app under a real uvicorn, on a port, so
that real ``websockets`` clients connect to it (and httpx talks HTTP to the same process)."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from notifier.feedgroups import FeedGroup
from notifier.storage.base import Storage
from notifier.web.app import create_app
from notifier.web.services import Services
from notifier.web.settings import server_options
from tests.e2e.cluster import Web, start_web
from tests.fanout.conftest import WorkerPool, make_config
from tests.realtime.client import Client
from tests.services import free_port
from tests.web.conftest import API_KEY, ORIGIN, close_services, make_services, server_settings


@dataclass
class Live:
    """A running server, an HTTP client for it, and a way to open websocket clients."""

    services: Services
    http: httpx.AsyncClient
    port: int

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    def server_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}"}

    def token(self, user: str, ttl: int = 600, feeds: list[str] | None = None) -> str:
        return self.services.tokens.issue(user, ttl, feeds)[0]

    def user_headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}"}

    def client(self, user: str, **kwargs: Any) -> Client:
        return Client(self.ws_url, self.token(user), origin=kwargs.pop("origin", ORIGIN))

    async def post(self, **activity: Any) -> dict[str, Any]:
        response = await self.http.post(
            "/v1/activities", json=activity, headers=self.server_headers()
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def mark(self, user: str, **body: Any) -> dict[str, Any]:
        response = await self.http.post(
            "/v1/me/feeds/notification/mark", json=body, headers=self.user_headers(user)
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


LiveFactory = Callable[..., Any]


@pytest.fixture
async def live_factory(storage: Storage) -> AsyncIterator[LiveFactory]:
    """Start servers over the test's storage with extra settings (``NOTIFIER_WS_*`` …)."""
    running: list[tuple[uvicorn.Server, asyncio.Task[None], Live]] = []

    async def start(groups: list[FeedGroup] | None = None, **env: str) -> Live:
        settings = server_settings(**env)
        services = make_services(storage, settings, groups)
        port = free_port()
        config = uvicorn.Config(
            create_app(services),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            **server_options(settings),  # what `notifier serve` runs with
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)
        live = Live(services, http, port)
        running.append((server, task, live))
        return live

    yield start
    for server, task, live in running:
        server.should_exit = True
        await task
        await live.http.aclose()
        await close_services(live.services)


@pytest.fixture
async def live(live_factory: LiveFactory) -> Live:
    result: Live = await live_factory()
    return result


@pytest.fixture
def processes(redis_url: str) -> Iterator[tuple[Web, WorkerPool]]:
    """``notifier serve`` and ``notifier worker`` on the session's Redis, a prefix of their own."""
    _, path = make_config(redis_url, f"x{uuid.uuid4().hex[:8]}")
    workers = WorkerPool(path, threads=2)
    web = start_web(path, path.parent)
    workers.start(1)
    try:
        yield web, workers
    finally:
        web.proc.terminate()
        try:
            web.proc.wait(15)
        except subprocess.TimeoutExpired:
            web.proc.kill()
        workers.stop()


Scenario = Callable[[httpx.AsyncClient, Client], Awaitable[None]]


async def run_on_processes(
    processes: tuple[Web, WorkerPool], user: str, scenario: Scenario
) -> None:
    """``scenario`` with an HTTP client of the ``processes``' web server and a websocket
    client of ``user`` (not connected yet); their output is printed when it fails."""
    web, workers = processes
    async with httpx.AsyncClient(base_url=web.http, timeout=30) as http:
        response = await http.post(
            "/v1/tokens", json={"user": user}, headers={"Authorization": f"Bearer {API_KEY}"}
        )
        assert response.status_code == 200, response.text
        client = Client(web.ws, response.json()["token"], origin=ORIGIN)
        try:
            await scenario(http, client)
        except BaseException:
            print(workers.output(), web.log.read_text(errors="replace")[-4000:])
            raise
