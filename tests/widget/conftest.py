"""A real browser against a real server: Debian's chromium driven by Playwright (async API, in
the session's event loop), and the demo app (API, websocket, /static, demo page) under a
real uvicorn on a free port in the same loop, so a test can stop and restart it.

Every test gets a fresh server (empty memory storage) and a fresh browser context; the
browser itself is started once per session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
from starlette.applications import Starlette

from notifier.config import Config
from notifier.demo import build_demo
from notifier.demo import demo_settings as make_settings
from notifier.web.services import Services
from tests.services import bound_socket, free_port, unavailable

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
T = TypeVar("T")
WAIT_MS = 15_000
"""Longest a browser-side expectation waits (auto-retrying) before it fails."""


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium; scripts/test does)")
    expect.set_options(timeout=WAIT_MS)
    async with async_playwright() as playwright:
        # --no-sandbox: chromium's sandbox refuses to run as root (CI containers).
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        yield browser
        await browser.close()


@dataclass
class Server:
    """The demo app on a port: HTTP helpers for the server API and a stop / start switch."""

    app: Starlette
    services: Services
    port: int
    http: httpx.AsyncClient
    uvicorn: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.services.settings.api_keys[0]}"}

    def token(self, user: str) -> str:
        return self.services.tokens.issue(user, 600)[0]

    async def start(self) -> None:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            ws="websockets-sansio",
            lifespan="off",
        )
        self.uvicorn = uvicorn.Server(config)
        self.task = asyncio.create_task(self.uvicorn.serve())
        while not self.uvicorn.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop listening and close every connection (the storage stays: a restart)."""
        if self.uvicorn is not None and self.task is not None:
            self.uvicorn.should_exit = True
            await self.task
        self.uvicorn = self.task = None

    async def notify(self, user: str, actor: str, verb: str = "like", **fields: Any) -> str:
        """Post an activity for ``user``'s notification feed through the server API."""
        body = {
            "actor": actor,
            "verb": verb,
            "object": f"{verb}:{actor}:{fields.pop('n', 1)}",
            "target": fields.pop("target", "photo:1"),
            "to": [f"notification:{user}"],
            "extra": {"url": "#/photos/1", "title": "your photo", **fields.pop("extra", {})},
            **fields,
        }
        response = await self.http.post("/v1/activities", json=body, headers=self.api())
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def notify_many(self, user: str, count: int) -> None:
        """``count`` likes by ana of ``user``'s photos, each its own group, in one batch."""
        activities = [
            {"actor": "ana", "verb": "like", "object": f"like:{i}", "target": f"photo:{i}",
             "to": [f"notification:{user}"]}
            for i in range(count)
        ]  # fmt: skip
        response = await self.http.post(
            "/v1/activities/batch", json={"activities": activities}, headers=self.api()
        )
        assert response.status_code == 201, response.text

    async def feed(self, user: str, limit: int = 100, status: str = "all") -> dict[str, Any]:
        """``user``'s notification feed and counts, as storage has them (every group, archived
        and snoozed ones included, unless ``status`` says otherwise)."""
        response = await self.http.get(
            f"/v1/feeds/notification/{user}",
            params={"limit": limit, "status": status},
            headers=self.api(),
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


ServerFactory = Callable[..., Any]


@pytest.fixture
async def server_factory() -> AsyncIterator[ServerFactory]:
    started: list[Server] = []

    async def start(*, origins: tuple[str, ...] = (), config: Config | None = None) -> Server:
        port = free_port()
        settings = make_settings("127.0.0.1", port)
        if origins:
            settings = replace(settings, allowed_origins=settings.allowed_origins + origins)
        app, services = build_demo(config or Config(), settings)
        http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)
        server = Server(app, services, port, http)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()
        await server.http.aclose()
        await server.services.realtime.hub.close()
        await server.services.fanout.close()
        await server.services.bus.close()
        await server.services.notifier.close()


@pytest.fixture
async def server(server_factory: ServerFactory) -> Server:
    result: Server = await server_factory()
    return result


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(viewport={"width": 1100, "height": 760})
    yield context
    await context.close()


@dataclass
class Tab:
    """A page and the script errors it raised (a test fails on any)."""

    page: Page
    errors: list[str]

    def user(self, name: str) -> Any:
        """The demo page's column for ``name`` (its bell, badge, panel…)."""
        return self.page.get_by_test_id(f"user-{name}")


@pytest.fixture
async def open_tab(context: BrowserContext, server: Server) -> AsyncIterator[Callable[..., Any]]:
    tabs: list[Tab] = []

    async def open_demo(path: str = "/") -> Tab:
        page = await context.new_page()
        tab = Tab(page, [])
        page.on("pageerror", lambda error: tab.errors.append(str(error)))
        await page.goto(server.url + path)
        tabs.append(tab)
        return tab

    yield open_demo
    for tab in tabs:
        assert not tab.errors, f"errors in the page: {tab.errors}"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """test-artifacts/ (git-ignored): screenshots a run leaves behind."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


async def eventually(probe: Callable[[], Awaitable[T]], expected: T) -> None:
    """Wait until ``probe()`` returns ``expected`` (storage catching up with a click), or
    fail with the last value seen after ``WAIT_MS``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_MS / 1000
    while (value := await probe()) != expected:
        if loop.time() > deadline:
            raise AssertionError(f"still {value!r}, expected {expected!r}")
        await asyncio.sleep(0.05)


def origin_of(sock: socket.socket) -> str:
    """The origin of a site that will listen on ``sock`` (``serve_site``)."""
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextlib.asynccontextmanager
async def serve_site(app: Starlette, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """Another site (an app embedding the widget) under uvicorn on its own origin, in the
    test's loop: its base URL while it runs. ``sock``: the bound socket it listens on
    (``bound_socket()``), when its origin must be known before (an allowed origin)."""
    sock = sock or bound_socket()
    port = int(sock.getsockname()[1])
    site = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(site.serve(sockets=[sock]))
    while not site.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        site.should_exit = True
        await task
        sock.close()
