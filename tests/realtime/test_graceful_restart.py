"""A deploy, for real: a ``notifier serve`` process holding 1,000 websockets gets SIGTERM while
a second process serves the same Redis (a rolling restart behind a load balancer; Redis, not
memory, so that the second process has the data the clients resume from).

The stopping process refuses new connections, closes every websocket with 1012 and a reason
that tells its client when to come back (``restart; retry in N ms``, N uniform in the
window), aborts a client that stopped reading once ``close_timeout`` has passed, and exits,
with no ERROR in its log. The clients come back to the other process, each after its delay,
spread over the window, and resume: each holds what an HTTP read returns, including what was
written while it was away."""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import os
import re
import resource
import signal
import socket
import subprocess
import termios
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.frames import Frame, Opcode

from notifier.errors import ConfigError
from notifier.realtime.settings import SHUTDOWN_MARGIN, RealtimeSettings, uvicorn_options
from notifier.web.auth import UserTokens
from notifier.web.settings import ServerSettings
from tests.e2e.cluster import Web, start_web
from tests.realtime.client import Client, announced_delay, http_state, summary
from tests.services import free_port
from tests.web.conftest import API_KEY, SECRET, server_settings

pytestmark = [pytest.mark.timeout(300), pytest.mark.single_redis]

WINDOW = 3.0
"""``ws_restart_window``, seconds: small, so the test is short."""
CLOSE_TIMEOUT = 2.0
USERS = 200
TABS = 5
"""Connections per user: 1,000 in all."""
SLICES = 10
REASON = re.compile(r"^restart; retry in (\d+) ms$")
KEY = {"Authorization": f"Bearer {API_KEY}"}


def config_toml(redis_url: str, prefix: str) -> str:
    # No slow-client timeout: the client that stops reading is still connected at SIGTERM.
    return f"""[storage]
url = "{redis_url}"
prefix = "{prefix}"

[server]
key_rate = 100000.0
key_burst = 100000
ws_restart_window = {WINDOW}
ws_close_timeout = {CLOSE_TIMEOUT}
ws_slow_timeout = 0

[fanout]
namespace = "ns{prefix}"
"""


@dataclass
class Comeback:
    """What one client saw of the restart."""

    code: int | None
    reason: str
    closed_at: float
    opened_at: float
    """When the other process answered its new handshake."""


def raise_open_files(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@pytest.fixture
def webs(redis_url: str, tmp_path: Path) -> Iterator[tuple[Web, Web]]:
    """The process to restart and the one that takes its clients over."""
    config = tmp_path / "notifier.toml"
    config.write_text(config_toml(redis_url, f"gr{uuid.uuid4().hex[:8]}"))
    started: list[Web] = []
    try:
        started += [start_web(config, tmp_path), start_web(config, tmp_path)]
        yield started[0], started[1]
    finally:
        for web in started:
            if web.proc.poll() is None:
                web.proc.terminate()
        for web in started:
            try:
                web.proc.wait(15)
            except subprocess.TimeoutExpired:
                web.proc.kill()


async def post_batch(http: httpx.AsyncClient, activities: list[dict[str, Any]]) -> list[str]:
    response = await http.post("/v1/activities/batch", json={"activities": activities},
                               headers=KEY)  # fmt: skip
    assert response.status_code == 201, response.text
    return [a["id"] for a in response.json()["activities"]]


def likes(users: list[str], target: str) -> list[dict[str, Any]]:
    return [{"actor": "ana", "verb": "like", "object": f"like:{target}:{user}", "target": target,
             "to": [f"notification:{user}"]} for user in users]  # fmt: skip


def holds(client: Client, activity_id: str) -> bool:
    feed = client.feeds["notification"]
    return any(a["id"] == activity_id for g in feed.items.values() for a in g["activities"])


class StalledClient:
    """A raw socket that completes the handshake, asks for far more than its buffers hold
    (big syncs) and never reads again: it never answers a close either."""

    def __init__(self, port: int, token: str = "") -> None:
        self.port = port
        self.token = token
        self.sock = socket.socket()
        # A small receive buffer: the server's writes back up after a few syncs.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setblocking(False)

    async def start(self, subscribes: int) -> None:
        loop = asyncio.get_running_loop()
        await loop.sock_connect(self.sock, ("127.0.0.1", self.port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET /v1/realtime HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")  # fmt: skip
        await loop.sock_sendall(self.sock, request.encode())
        head = b""
        while b"\r\n\r\n" not in head:  # nothing else comes before the auth message
            head += await loop.sock_recv(self.sock, 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        if not subscribes:
            return
        messages: list[dict[str, Any]] = [{"type": "auth", "token": self.token}]
        messages += [{"type": "subscribe", "feed": "notification", "limit": 100}] * subscribes
        for message in messages:
            frame = Frame(Opcode.TEXT, json.dumps(message).encode())
            await loop.sock_sendall(self.sock, frame.serialize(mask=True))

    def unread(self) -> int:
        return int.from_bytes(fcntl.ioctl(self.sock, termios.FIONREAD, b"\0" * 4), "little")

    async def backed_up(self) -> None:
        """Until its receive buffer is full and stays so (the server's writes are stuck)."""
        last, since = -1, time.monotonic()
        while True:
            await asyncio.sleep(0.1)
            now = self.unread()
            if now != last:
                last, since = now, time.monotonic()
            elif now > 1000 and time.monotonic() - since > 1.0:
                return


def histogram(times: list[float], start: float, width: float) -> list[int]:
    """How many of ``times`` fall in each of SLICES slices of ``width`` from ``start`` (the
    last slice takes what is later)."""
    counts = [0] * SLICES
    for t in times:
        counts[min(SLICES - 1, max(0, int((t - start) // width)))] += 1
    return counts


async def refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


async def test_sigterm_closes_with_1012_and_the_clients_come_back_spread_over_the_window(
    webs: tuple[Web, Web],
) -> None:
    old, new = webs
    raise_open_files(4 * USERS * TABS)
    tokens = UserTokens(SECRET, 3600, 86400)
    users = [f"u{n:03d}" for n in range(USERS)]
    async with httpx.AsyncClient(base_url=new.http, timeout=60) as http:
        before = dict(zip(users, await post_batch(http, likes(users, "photo:1")), strict=True))
        # The stalled client's user: 100 groups, so each of its syncs is tens of KB.
        await post_batch(http, [like for n in range(100)
                                for like in likes(["stalled"], f"photo:{n}")])  # fmt: skip

        # 1,000 connections to the process that is about to stop, each subscribed.
        clients = [Client(old.ws, tokens.issue(user)[0]) for user in users for _ in range(TABS)]
        gate = asyncio.Semaphore(50)

        async def open_one(client: Client) -> None:
            async with gate:
                await client.connect()
                sync = await client.subscribe("notification")
                assert sync["type"] == "sync", sync

        await asyncio.gather(*(open_one(client) for client in clients))
        assert all(holds(c, before[u]) for c, u in zip(clients, _owners(users), strict=True))
        stalled = StalledClient(old.port, tokens.issue("stalled")[0])
        await stalled.start(subscribes=60)
        await stalled.backed_up()

        loop = asyncio.get_running_loop()
        gap: dict[str, str] = {}
        gap_written = asyncio.Event()

        async def come_back(client: Client, user: str) -> Comeback:
            code, reason = await client.closed(within=120)
            closed_at = loop.time()
            frames = await client.come_back(reason, new.ws)  # waits the announced delay
            assert client.opened_at is not None
            opened_at = client.opened_at - time.monotonic() + loop.time()
            assert frames["notification"]["type"] == "sync", frames
            await gap_written.wait()
            while not holds(client, gap[user]):  # in the resume's sync, or pushed after it
                await client.recv(30)
            return Comeback(code, reason, closed_at, opened_at)

        watchers = [asyncio.create_task(come_back(c, u))
                    for c, u in zip(clients, _owners(users), strict=True)]  # fmt: skip
        await asyncio.sleep(0.1)  # every watcher is reading
        signalled = loop.time()
        old.proc.send_signal(signal.SIGTERM)

        # Written while the clients are away (or coming back): only a resume, or a push
        # from the new process, can bring them.
        gap.update(zip(users, await post_batch(http, likes(users, "photo:2")), strict=True))
        gap_written.set()

        # The listener is closed at once, while the stalled client still holds the process.
        refused_at = None
        while old.proc.poll() is None:
            if await refused(old.port):
                refused_at = loop.time()
                break
            await asyncio.sleep(0.02)
        returncode = await asyncio.to_thread(old.proc.wait, 30)
        exited = loop.time() - signalled
        comebacks = await asyncio.gather(*watchers)

        # Every client holds what an HTTP read returns.
        wrong = []
        for user, client in zip(_owners(users), clients, strict=True):
            if users.index(user) % 20 == 0 or client is clients[-1]:
                headers = {"Authorization": f"Bearer {client.token}"}
                items, _ = await http_state(http, "notification", headers)
                if summary(client.feeds["notification"].newest(25)) != summary(items):
                    wrong.append(user)
        for client in clients:
            await client.close()
    stalled.sock.close()

    delays = [announced_delay(c.reason) for c in comebacks]
    reopened = [c.opened_at - signalled for c in comebacks]
    # Slices of the window from the first close: when the process began closing.
    closing = min(c.closed_at for c in comebacks) - signalled
    spread = histogram(reopened, closing, WINDOW / SLICES)
    drawn = histogram([d or 0.0 for d in delays], 0.0, WINDOW / SLICES)
    print(
        f"\n{len(comebacks)} clients; listener refused {(refused_at or 0) - signalled:.2f} s "
        f"after SIGTERM, first close {closing:.2f} s, exit {exited:.2f} s\n"
        f"announced delays per {WINDOW / SLICES:.1f} s slice: {drawn}\n"
        f"reconnects per {WINDOW / SLICES:.1f} s slice from the first close: {spread}\n"
        f"first reconnect {min(reopened):.2f} s after SIGTERM, last {max(reopened):.2f} s"
    )

    assert len(comebacks) == USERS * TABS
    assert {c.code for c in comebacks} == {1012}
    assert [c.reason for c in comebacks if not REASON.match(c.reason)] == []
    assert all(d is not None and 0 <= d < WINDOW for d in delays)
    # Each came back no earlier than told (from when its close arrived).
    early = [c for c, d in zip(comebacks, delays, strict=True)
             if c.opened_at < c.closed_at + (d or 0.0)]  # fmt: skip
    assert early == []
    # Spread over the window: no tenth of it holds more than a quarter of the reconnects,
    # and they span most of it.
    assert max(spread) <= 0.25 * len(comebacks), spread
    assert max(reopened) - min(reopened) > 0.7 * WINDOW
    assert wrong == []

    assert refused_at is not None, "the listener stayed open after SIGTERM"
    # uvicorn re-raises the SIGTERM it handled once it has shut down.
    assert returncode in (0, -signal.SIGTERM)
    assert exited < CLOSE_TIMEOUT + SHUTDOWN_MARGIN, f"{exited:.1f} s"
    log = old.log.read_text(errors="replace")
    assert [line for line in log.splitlines() if "ERROR" in line or "Traceback" in line] == [], log


def _owners(users: list[str]) -> list[str]:
    """The user of each client, in the order the clients were made."""
    return [user for user in users for _ in range(TABS)]


async def test_a_connection_closing_already_at_sigterm_is_aborted_on_time() -> None:
    """A client being dropped (its close frame behind a backlog it does not read) when the
    process stops: the stop leaves its abort timer alone, so it holds the exit back no longer
    than ``close_timeout`` (uvicorn would close() it, which waits for the backlog: until
    ``timeout_graceful_shutdown`` cancels everything, logging an error)."""
    drop = asyncio.Event()
    flood_ended: list[BaseException] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})

        async def flood() -> None:
            try:
                while True:
                    await send({"type": "websocket.send", "text": "x" * 60_000})
            except Exception as exc:  # waiting for the backlog when the close came
                flood_ended.append(exc)

        flooding = asyncio.create_task(flood())
        await drop.wait()
        await send({"type": "websocket.close", "code": 4000, "reason": "dropped"})
        await flooding
        while (await receive())["type"] != "websocket.disconnect":
            pass

    settings = RealtimeSettings(close_timeout=CLOSE_TIMEOUT)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="off", **uvicorn_options(settings))  # fmt: skip
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    stalled = StalledClient(port)
    try:
        await stalled.start(subscribes=0)
        await stalled.backed_up()
        drop.set()
        await asyncio.sleep(0.2)  # the close is on its way, its abort timer running
        loop = asyncio.get_running_loop()
        stopping = loop.time()
        server.should_exit = True
        await asyncio.wait_for(serving, 30)
        stopped = loop.time() - stopping
    finally:
        stalled.sock.close()
    print(f"stopped {stopped:.2f} s after should_exit")
    # As if the client had left (uvicorn's ClientDisconnected), not a RuntimeError.
    assert [type(exc).__name__ for exc in flood_ended] == ["ClientDisconnected"]
    assert stopped < CLOSE_TIMEOUT + SHUTDOWN_MARGIN / 2, f"{stopped:.1f} s"


def test_the_restart_window_is_a_setting_from_the_environment_or_the_file() -> None:
    assert server_settings().realtime.restart_window == 10.0
    assert server_settings(NOTIFIER_WS_RESTART_WINDOW="2.5").realtime.restart_window == 2.5
    assert server_settings(NOTIFIER_WS_RESTART_WINDOW="0").realtime.restart_window == 0.0
    env = {"NOTIFIER_SECRET": SECRET, "NOTIFIER_API_KEYS": API_KEY}
    table = {"ws_restart_window": 4}
    assert ServerSettings.load(table, env).realtime.restart_window == 4.0
    for wrong in ("-1", "soon", "inf", "3601"):
        with pytest.raises(ConfigError, match="NOTIFIER_WS_RESTART_WINDOW"):
            server_settings(NOTIFIER_WS_RESTART_WINDOW=wrong)
    options = uvicorn_options(RealtimeSettings(restart_window=2.5, close_timeout=3.0))
    assert options["ws"].restart_window == 2.5
    assert options["timeout_graceful_shutdown"] == 3.0 + SHUTDOWN_MARGIN
