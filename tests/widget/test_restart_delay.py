"""The headless JS client (under the widget, in a real browser) after a server restart: it
waits the delay the server's 1012 close announces, then comes back with one attempt."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from playwright.async_api import expect

from notifier.realtime import uvicorn_ws
from notifier.web.settings import server_options
from tests.widget.conftest import Server, Tab

BO_CLIENT = 'document.querySelector("[data-testid=user-bo] notifier-bell").client'
ANNOUNCED_MS = 2000


async def serve_as_deployed(server: Server) -> None:
    """(Re)start ``server`` with the uvicorn options of ``notifier serve`` (notifier's own
    websocket protocol, which announces when to come back), not the fixture's defaults."""
    await server.stop()
    config = uvicorn.Config(server.app, host="127.0.0.1", port=server.port, log_level="warning",
                            lifespan="off", **server_options(server.services.settings))  # fmt: skip
    server.uvicorn = uvicorn.Server(config)
    server.task = asyncio.create_task(server.uvicorn.serve())
    while not server.uvicorn.started:
        if server.task.done():
            server.task.result()
        await asyncio.sleep(0.01)


async def test_after_a_restart_the_client_waits_the_announced_delay(
    server: Server, open_tab: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The delay is drawn at random per connection; fixed here so the wait can be seen.
    monkeypatch.setattr(uvicorn_ws, "restart_reason",
                        lambda window: f"restart; retry in {ANNOUNCED_MS} ms")  # fmt: skip
    await serve_as_deployed(server)
    await server.notify("bo", "ana")
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await expect(bo.locator(".notifier")).to_have_attribute("data-status", "live")
    await tab.page.evaluate(
        f"""() => {{
            window.statuses = [];
            {BO_CLIENT}.on("status", (status, error) =>
                window.statuses.push([status, error, performance.now()]));
        }}"""
    )

    await serve_as_deployed(server)  # SIGTERM's path: uvicorn's shutdown, then a new server
    await expect(bo.locator(".notifier")).to_have_attribute("data-status", "live")
    await server.notify("bo", "cy", "comment", target="photo:2")
    await expect(bo.get_by_test_id("notifier-badge")).to_have_text("2")

    statuses: list[list[Any]] = await tab.page.evaluate("window.statuses")
    assert [s[:2] for s in statuses] == [
        ["reconnecting", f"restart; retry in {ANNOUNCED_MS} ms"],
        ["live", None],
    ]
    waited = statuses[1][2] - statuses[0][2]
    print(f"live again {waited:.0f} ms after the close")
    # Not at once (its backoff would have tried within 500 ms), and with one attempt: the
    # new server was up long before the delay ended.
    assert waited >= ANNOUNCED_MS - 5  # timer rounding
    assert waited < ANNOUNCED_MS + 5000
    assert await tab.page.evaluate(f"{BO_CLIENT}.connections") == 2
