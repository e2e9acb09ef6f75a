"""The operator page in real Chromium, over a real deployment: a redis-server, two
``notifier serve`` processes and a ``notifier worker``. It must show every process (not only
the one that serves it), the queues, dead letters it can act on, recent errors, and one
user's feeds and connections across both web processes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import websockets
from playwright.async_api import Browser, expect

from notifier.config import Config
from notifier.fanout.actors import FanoutActors
from notifier.fanout.jobs import ChunkJob, Priority
from notifier.fanout.runtime import open_manager
from tests.ops.conftest import ADMIN_PASSWORD, NAMESPACE, Stack
from tests.web.conftest import API_KEY, ORIGIN
from tests.widget.conftest import ARTIFACTS


async def connect(port: int, token: str, feeds: list[str]) -> Any:
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/v1/realtime", origin=ORIGIN)  # type: ignore[arg-type]
    await ws.send(json.dumps({"type": "auth", "token": token}))
    assert json.loads(await ws.recv())["type"] == "welcome"
    for feed in feeds:
        await ws.send(json.dumps({"type": "subscribe", "feed": feed}))
        assert json.loads(await ws.recv())["type"] == "sync"
    return ws


async def a_dead_letter(stack: Stack) -> FanoutActors:
    """A chunk job naming a feed group the worker does not know: it fails, is retried once
    (max_retries = 1), and is dead-lettered; the worker logs both."""
    manager = open_manager(Config.load(str(stack.config)))
    actors = manager.dispatcher
    assert isinstance(actors, FanoutActors)
    job = ChunkJob(op="add", actor="ana", activity_ids=["x"], users=["bo"],
                   entries={"nosuchgroup": []})  # fmt: skip
    await actors.send([(Priority.HIGH, job)])
    return actors


def dead_count(stack: Stack) -> int:
    import redis

    client = redis.Redis.from_url(stack.redis.url)
    try:
        return sum(int(client.zcard(f"{NAMESPACE}:{q}.XQ")) for q in ("notifier.high",
                   "notifier.low"))  # fmt: skip
    finally:
        client.close()


async def test_the_operator_page_shows_every_process_and_acts(
    stack2: Stack, browser: Browser
) -> None:
    other = stack2.ports[1]
    http = httpx.AsyncClient(base_url=stack2.base, headers={"Authorization": f"Bearer {API_KEY}"})
    for user in ("bo", "cy"):
        assert (await http.post("/v1/follows", json={"user": user, "target": "ana"})
                ).status_code in (200, 201)  # fmt: skip
    token = (await http.post("/v1/tokens", json={"user": "bo"})).json()["token"]
    sockets = [await connect(stack2.port, token, ["timeline"])]
    sockets += [await connect(other, token, ["timeline"]) for _ in range(2)]
    response = await http.post("/v1/activities", json={"actor": "ana", "verb": "post",
                                                        "object": "post:1"})  # fmt: skip
    assert response.status_code == 201
    for ws in sockets:  # each connection was pushed the post
        assert json.loads(await asyncio.wait_for(ws.recv(), 15))["type"] == "update"
    await a_dead_letter(stack2)
    for _ in range(300):
        if dead_count(stack2) == 1:
            break
        await asyncio.sleep(0.05)
    assert dead_count(stack2) == 1

    # No credential, no page.
    anonymous = await http.get("/admin", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    wrong = await http.get("/admin/api/state", auth=("admin", "not-the-password"))
    assert wrong.status_code == 401

    context = await browser.new_context(
        http_credentials={"username": "admin", "password": ADMIN_PASSWORD}
    )
    page = await context.new_page()
    await page.goto(f"{stack2.base}/admin")
    # Both web processes and the worker, though this page comes from one of them.
    await expect(page.locator("#processes tbody tr[data-kind=web]")).to_have_count(2)
    await expect(page.locator("#processes tbody tr[data-kind=worker]")).to_have_count(1)
    await expect(page.locator("#t-connections")).to_have_text("3")
    await expect(page.locator("#queues tbody tr")).to_have_count(2)
    await expect(page.locator("#t-dead")).to_have_text("1")
    await expect(page.locator("#dead tbody tr[data-id]")).to_have_count(1)
    await expect(page.locator("#dead tbody")).to_contain_text("nosuchgroup")
    await expect(page.locator("#errors tbody")).to_contain_text("dead-lettered")

    # The inspector: bo's feeds, and bo's three connections on both processes with what
    # was pushed to each.
    await page.fill("#inspect-user", "bo")
    await page.click("#inspect-form button")
    await expect(page.locator("#inspect-connections tbody tr")).to_have_count(3)
    await expect(page.locator("#inspect-connections tbody")).to_contain_text('"type":"update"')
    await expect(page.locator("#inspect-feeds tr[data-feed=timeline]")).to_contain_text(
        "ana post post:1"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "admin.png"), full_page=True)

    # Requeue sends the job back (it fails again: back among the dead, with fresh retries);
    # discard deletes it.
    worker_failures = stack2.logs().count("fanout job failed")
    await page.locator("#dead tbody input[type=checkbox]").check()
    await page.click("#dead-requeue")
    await expect(page.locator("#dead-result")).to_have_text("requeued 1")
    for _ in range(300):
        if stack2.logs().count("fanout job failed") >= worker_failures + 2 and dead_count(
            stack2) == 1:  # fmt: skip
            break
        await asyncio.sleep(0.05)
    assert stack2.logs().count("fanout job failed") >= worker_failures + 2
    await expect(page.locator("#dead tbody tr[data-id]")).to_have_count(1)
    await page.locator("#dead tbody input[type=checkbox]").check()
    await page.click("#dead-discard")
    await expect(page.locator("#dead-result")).to_have_text("discarded 1")
    assert dead_count(stack2) == 0
    await expect(page.locator("#t-dead")).to_have_text("0")

    # Acting needs the page's header: a cross-site form carrying the Basic credential is refused.
    forged = await http.post("/admin/api/deadletters/discard", auth=("admin", ADMIN_PASSWORD),
                             json={"ids": ["x"]})  # fmt: skip
    assert forged.status_code == 403
    for ws in sockets:
        await ws.close()
    await context.close()
    await http.aclose()
