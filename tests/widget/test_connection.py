"""The widget when things go wrong, in a real browser: marks made offline are kept and sent
on reconnect, the closed bell says it is offline, and a failing token URL or a refused origin
is named as such instead of a blank widget or "can't be reached"."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from playwright.async_api import BrowserContext, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route

from notifier.web.static import STATIC_DIR, StaticAssets
from tests.widget.conftest import Server, ServerFactory, Tab, eventually, serve_site


async def unread(server: Server) -> int:
    count: int = (await server.feed("bo"))["counts"]["unread"]
    return count


async def unseen(server: Server) -> int:
    count: int = (await server.feed("bo"))["counts"]["unseen"]
    return count


async def test_mark_all_read_made_offline_is_sent_when_the_browser_is_back_online(
    server: Server, open_tab: Any, context: BrowserContext
) -> None:
    for n, verb in enumerate(["like", "comment", "mention"]):
        await server.notify("bo", "ana", verb, n=n, target=f"photo:{n}")
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await bo.get_by_test_id("notifier-bell").click()
    rows = bo.get_by_test_id("notifier-item")
    await expect(rows).to_have_count(3)
    await context.set_offline(True)
    await bo.get_by_test_id("notifier-mark-all").click()
    await expect(bo.locator('[data-testid="notifier-item"][data-read="true"]')).to_have_count(3)
    status = bo.get_by_test_id("notifier-status")
    await expect(status).to_have_text("Offline: 1 change will be sent when you are back online.")
    assert await unread(server) == 3  # queued, not sent (and not lost)
    await context.set_offline(False)
    await eventually(lambda: unread(server), 0)
    await expect(status).to_be_hidden()
    await bo.locator(".notifier[data-status='live']").wait_for()
    await expect(bo.locator('[data-testid="notifier-item"][data-read="true"]')).to_have_count(3)
    await expect(bo.get_by_test_id("notifier-panel")).not_to_contain_text("Failed to fetch")


async def test_marks_made_while_the_server_is_down_are_sent_when_it_is_back(
    server: Server, open_tab: Any
) -> None:
    await server.notify("bo", "ana")
    await server.notify("bo", "cy", "comment")
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await bo.get_by_test_id("notifier-bell").click()
    await expect(bo.get_by_test_id("notifier-item")).to_have_count(2)
    await server.stop()
    liked = bo.get_by_test_id("notifier-item").filter(has_text="liked")
    await liked.get_by_role("button", name="Mark as read").click()
    await expect(bo.get_by_test_id("notifier-status")).to_contain_text("1 change will be sent")
    await expect(bo.get_by_test_id("notifier-panel")).not_to_contain_text("fetch")
    await expect(liked).to_have_attribute("data-read", "true")
    await server.start()
    await eventually(lambda: unread(server), 1)
    await expect(bo.locator(".notifier")).to_have_attribute("data-status", "live")
    await expect(liked).to_have_attribute("data-read", "true")  # not back to unread


async def test_a_mark_whose_request_failed_while_the_socket_stayed_up_is_sent_again(
    server: Server, open_tab: Any
) -> None:
    await server.notify("bo", "ana")
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await bo.get_by_test_id("notifier-bell").click()
    await eventually(lambda: unseen(server), 0)  # opening's own mark went through first
    await tab.page.route("**/mark", lambda route: route.abort("connectionreset"))
    await bo.get_by_role("button", name="Mark as read").click()
    await expect(bo.get_by_test_id("notifier-status")).to_contain_text("1 change will be sent")
    await expect(bo.locator(".notifier")).to_have_attribute("data-status", "live")
    await tab.page.unroute("**/mark")
    await eventually(lambda: unread(server), 0)  # by the retry timer: nothing else happened
    await expect(bo.get_by_test_id("notifier-status")).to_be_hidden()


async def test_the_closed_bell_says_when_it_is_offline(server: Server, open_tab: Any) -> None:
    await server.notify("bo", "ana")
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    bell = bo.get_by_test_id("notifier-bell")
    await expect(bo.locator(".notifier")).to_have_attribute("data-status", "live")
    offline = bo.get_by_test_id("notifier-bell-offline")
    await expect(offline).to_be_hidden()
    await server.stop()
    await expect(offline).to_be_visible()
    await expect(bell).to_have_attribute("aria-label", "Notifications, 1 unseen, offline")
    await expect(bo.get_by_test_id("notifier-panel")).to_be_hidden()  # said on the closed bell
    await server.start()
    await expect(offline).to_be_hidden()
    await expect(bell).to_have_attribute("aria-label", "Notifications, 1 unseen")


async def test_a_failing_token_url_is_named_as_such(server: Server, open_tab: Any) -> None:
    tab: Tab = await open_tab()
    await tab.page.evaluate(
        """() => {
            const bell = document.createElement("notifier-bell");
            bell.dataset.testid = "no-token";
            bell.setAttribute("token-url", "/demo/token/mallory");  // 404: not a demo user
            document.body.prepend(bell);
        }"""
    )
    host = tab.page.get_by_test_id("no-token")
    await expect(host.get_by_test_id("notifier-bell")).to_have_attribute(
        "aria-label", "Notifications, offline"
    )
    await host.get_by_test_id("notifier-bell").click()
    await expect(host.get_by_test_id("notifier-error")).to_have_text(
        re.compile("the sign-in token could not be fetched")
    )
    await expect(host.get_by_test_id("notifier-error")).not_to_contain_text("can't be reached")


PAGE = """<!doctype html><html lang="en"><body>
<header><div id="bell"></div></header>
<script type="module">
  import {{ mount }} from "{static}/static/notifier.js";
  window.widget = mount(document.querySelector("#bell"), {{
    server: "{server}", token: () => {token}, backoff: {{ min: 50, max: 200 }},
  }});
</script></body></html>"""


@asynccontextmanager
async def site_with_own_copy(server: Server, *, own_copy: bool = True) -> AsyncIterator[str]:
    """Another site pointing the widget at notifier, whose NOTIFIER_ALLOWED_ORIGINS does not
    name it; the widget's files come from its own copy (as from a CDN) or from notifier."""
    static = "" if own_copy else server.url
    html = PAGE.format(server=server.url, token=json.dumps(server.token("bo")), static=static)

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(html)

    app = Starlette(routes=[Route("/", page), Mount("/static", app=StaticAssets(STATIC_DIR))])
    async with serve_site(app) as url:
        yield url


@pytest.mark.parametrize("own_copy", [True, False], ids=["own-copy", "notifier-static"])
async def test_an_origin_the_server_does_not_allow_is_named_in_the_widget(
    server_factory: ServerFactory, context: BrowserContext, own_copy: bool
) -> None:
    server: Server = await server_factory()
    await server.notify("bo", "ana")
    async with site_with_own_copy(server, own_copy=own_copy) as origin:
        page = await context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        await page.goto(origin)
        bell = page.get_by_test_id("notifier-bell")
        await expect(bell).to_have_attribute("aria-label", "Notifications, offline")
        await bell.click()
        await expect(page.get_by_test_id("notifier-error")).to_contain_text(
            f"the server does not accept this site ({origin})"
        )
        assert any("NOTIFIER_ALLOWED_ORIGINS" in text for text in console), console
