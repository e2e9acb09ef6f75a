"""The limits hold across web processes: two ``notifier serve`` processes on one Redis, real
websocket and HTTP clients spread over both. A user's connections are capped at
``max_per_user`` in all; a caller's burst is one budget in all; the slots of a process killed
with SIGKILL come back after ``ws_slot_ttl``."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.e2e.cluster import Web, start_web
from tests.services import broker_for
from tests.web.conftest import API_KEY, ORIGIN

pytestmark = pytest.mark.timeout(120)

MAX_PER_USER = 3
BURST = 6
SLOT_TTL = 6.0
KEY = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def webs(storage_redis_url: str) -> Iterator[list[Web]]:
    """Two web processes on the session's Redis, under a key prefix of their own."""
    prefix = f"lim{uuid.uuid4().hex[:8]}"
    folder = Path(tempfile.mkdtemp(prefix="notifier-limits-"))
    broker = broker_for(storage_redis_url)
    config = folder / "notifier.toml"
    config.write_text(
        f'[storage]\nurl = "{storage_redis_url}"\nprefix = "{prefix}"\n\n'
        # user_rate: one token back every 100 s, none within the test.
        f"[server]\nuser_rate = 0.01\nuser_burst = {BURST}\n"
        f"ws_max_per_user = {MAX_PER_USER}\nws_slot_ttl = {SLOT_TTL}\nws_restart_window = 0\n\n"
        f'[fanout]\nnamespace = "ns{prefix}"\n' + (f'broker_url = "{broker}"\n' if broker else "")
    )
    started: list[Web] = []
    try:
        started = [start_web(config, folder), start_web(config, folder)]
        yield started
    finally:
        for web in started:
            if web.proc.poll() is None:
                web.proc.terminate()
        for web in started:
            try:
                web.proc.wait(15)
            except subprocess.TimeoutExpired:
                web.proc.kill()
        shutil.rmtree(folder, ignore_errors=True)


async def token(web: Web, user: str) -> str:
    async with httpx.AsyncClient(base_url=web.http, timeout=30) as http:
        response = await http.post("/v1/tokens", json={"user": user}, headers=KEY)
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


async def open_tab(web: Web, credential: str) -> tuple[ClientConnection | None, int]:
    """A connection that authenticates: (the open connection, 0) when welcomed, else (None,
    the close code)."""
    ws = await websockets.connect(web.ws, additional_headers={"Origin": ORIGIN}, open_timeout=30)
    await ws.send(json.dumps({"type": "auth", "token": credential}))
    try:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
    except websockets.ConnectionClosed as exc:
        assert exc.rcvd is not None, "closed without a close frame"
        return None, exc.rcvd.code
    assert frame["type"] == "welcome", frame
    return ws, 0


async def until_admitted(web: Web, credential: str, within: float) -> ClientConnection:
    """Open tabs until one is welcomed (each refusal must be 4409); fail after ``within``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        ws, code = await open_tab(web, credential)
        if ws is not None:
            return ws
        assert code == 4409, code
        assert loop.time() < deadline, f"still refused after {within}s"
        await asyncio.sleep(0.1)


async def close_all(tabs: list[ClientConnection | None]) -> None:
    await asyncio.gather(*(t.close() for t in tabs if t is not None), return_exceptions=True)


async def test_a_users_connections_over_two_processes_are_capped_in_all(webs: list[Web]) -> None:
    one, two = webs
    credential = await token(one, "bo")
    extra = 3
    # Opened at once, alternating processes: each admission races the others.
    opened = await asyncio.gather(
        *(open_tab(webs[n % 2], credential) for n in range(MAX_PER_USER + extra))
    )
    tabs = [ws for ws, _ in opened]
    codes = sorted(code for _, code in opened)
    try:
        assert codes == [0] * MAX_PER_USER + [4409] * extra, codes
        assert (await open_tab(one, credential))[1] == 4409
        assert (await open_tab(two, credential))[1] == 4409
        other, code = await open_tab(two, await token(two, "cy"))  # the cap is per user
        assert code == 0
        tabs.append(other)
        # A closed tab frees its place, for a connection on either process.
        held = next(t for t in tabs if t is not None)
        await held.close()
        tabs.remove(held)
        tabs.append(await until_admitted(two, credential, within=10))
        assert (await open_tab(one, credential))[1] == 4409
    finally:
        await close_all(tabs)


async def test_a_callers_burst_is_one_budget_over_two_processes(webs: list[Web]) -> None:
    credential = await token(webs[0], "bo")
    headers = {"Authorization": f"Bearer {credential}"}
    clients = [httpx.AsyncClient(base_url=w.http, timeout=30) for w in webs]
    try:
        statuses = [
            (await clients[n % 2].get("/v1/me/feeds/notification", headers=headers)).status_code
            for n in range(BURST)
        ]
        assert statuses == [200] * BURST
        for http in clients:
            response = await http.get("/v1/me/feeds/notification", headers=headers)
            assert response.status_code == 429, response.text
            assert response.json()["error"]["code"] == "rate_limited"
            # One token at 0.01/s: 100 s, less what came back since the burst began.
            assert 90 <= int(response.headers["Retry-After"]) <= 100
        other = {"Authorization": f"Bearer {await token(webs[1], 'cy')}"}
        response = await clients[1].get("/v1/me/feeds/notification", headers=other)
        assert response.status_code == 200  # a budget per caller
    finally:
        for http in clients:
            await http.aclose()


async def test_a_killed_processs_slots_come_back_after_the_slot_ttl(webs: list[Web]) -> None:
    doomed, survivor = webs
    credential = await token(survivor, "bo")
    tabs = [(await open_tab(doomed, credential))[0] for _ in range(MAX_PER_USER)]
    assert all(tabs)
    try:
        doomed.proc.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(doomed.proc.wait, 15) == -signal.SIGKILL
        # Nothing was given back: the dead process's slots still count...
        assert (await open_tab(survivor, credential))[1] == 4409
        # ... until they expire, one slot_ttl after the last refresh at most.
        back = [await until_admitted(survivor, credential, within=SLOT_TTL + 10)]
        for _ in range(MAX_PER_USER - 1):
            ws, code = await open_tab(survivor, credential)
            assert code == 0
            back.append(ws)
        assert (await open_tab(survivor, credential))[1] == 4409
        await close_all(list(back))
    finally:
        await close_all(list(tabs))
