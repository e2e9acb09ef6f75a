"""The widget's live side in a real browser: tabs in sync, a connection killed and restored,
a hidden tab that lets go of its socket, and embedding from another origin."""

from __future__ import annotations

import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from playwright.async_api import BrowserContext, Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from notifier.config import Config
from notifier.feedgroups import FeedGroups, default_groups
from tests.services import bound_socket
from tests.widget.conftest import (
    Server,
    ServerFactory,
    Tab,
    eventually,
    origin_of,
    serve_site,
)

BO_CLIENT = 'document.querySelector("[data-testid=user-bo] notifier-bell").client'


async def held_ids(page: Page) -> list[str]:
    """The group ids bo's widget holds (its client's state, not only what is drawn)."""
    ids: list[str] = await page.evaluate(f"{BO_CLIENT}.items().map(g => g.id)")
    return ids


async def test_a_mark_in_one_tab_updates_the_badge_in_the_others(
    server: Server, open_tab: Any
) -> None:
    await server.notify("bo", "ana")
    await server.notify("bo", "cy", "comment")
    first: Tab = await open_tab()
    second: Tab = await open_tab()
    for tab in (first, second):
        await expect(tab.user("bo").get_by_test_id("notifier-badge")).to_have_text("2")
    await first.user("bo").get_by_test_id("notifier-bell").click()
    await expect(second.user("bo").get_by_test_id("notifier-badge")).to_be_hidden()
    await first.user("bo").get_by_test_id("notifier-mark-all").click()
    await second.user("bo").get_by_test_id("notifier-bell").click()
    await expect(
        second.user("bo").locator('[data-testid="notifier-item"][data-read="true"]')
    ).to_have_count(2)
    await server.notify("bo", "dee", "mention", target="post:9")
    for tab in (first, second):
        await expect(tab.user("bo").get_by_test_id("notifier-badge")).to_have_text("1")


async def test_groups_trimmed_from_the_feed_leave_the_inbox(
    server_factory: ServerFactory, context: BrowserContext
) -> None:
    """A feed keeps its newest max_length groups: the ones an addition pushes out of storage
    leave the widget too (live, and again after a resume)."""
    groups = [g if g.name != "notification" else replace(g, max_length=5)
              for g in default_groups()]  # fmt: skip
    server = await server_factory(config=Config(feeds=FeedGroups.of(groups)))
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(server.url + "/")
    bo = page.get_by_test_id("user-bo")
    await expect(bo.locator(".notifier")).to_have_attribute("data-status", "live")
    await server.notify_many("bo", 12)
    stored = [g["id"] for g in (await server.feed("bo"))["groups"]]
    assert len(stored) == 5
    await eventually(lambda: held_ids(page), stored)
    await page.evaluate(f"{BO_CLIENT}.reconnect()")
    await expect(bo.locator(".notifier")).to_have_attribute("data-status", "live")
    await server.notify_many("bo", 3)
    stored = [g["id"] for g in (await server.feed("bo"))["groups"]]
    await eventually(lambda: held_ids(page), stored)
    await bo.get_by_test_id("notifier-bell").click()
    await expect(bo.get_by_test_id("notifier-item")).to_have_count(5)
    assert not errors


async def test_a_restarted_connection_resumes_without_losing_an_item(
    server: Server, open_tab: Any
) -> None:
    await server.notify("bo", "ana")
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await expect(bo.get_by_test_id("notifier-badge")).to_have_text("1")
    await server.stop()  # every websocket is closed; the widget starts retrying
    await expect(bo.locator(".notifier")).to_have_attribute("data-status", "reconnecting")
    # Written while no connection exists: no event can carry these; only the resume can.
    feed = server.services.notifier.notification_feed("notification", "bo")
    for n, actor in enumerate(["cy", "dee"]):
        activity = server.services.notifier.activity(
            actor=actor, verb="comment", object=f"comment:{n}", target=f"photo:{n + 5}",
            to=["notification:bo"], extra={"title": "your photo"},
        )  # fmt: skip
        await feed.add(activity)
    await server.start()
    await expect(bo.locator(".notifier")).to_have_attribute("data-status", "live")
    await expect(bo.get_by_test_id("notifier-badge")).to_have_text("3")
    stored = [g["id"] for g in (await server.feed("bo"))["groups"]]
    assert await held_ids(tab.page) == stored
    resumed = await tab.page.evaluate(f"{BO_CLIENT}.lastSubscribe")
    assert resumed["position"] < max(stored)  # a resume from what it had, not a fresh read
    assert await tab.page.evaluate(f"{BO_CLIENT}.connections") >= 2


async def test_a_connection_dropped_by_the_client_resumes_too(
    server: Server, open_tab: Any
) -> None:
    await server.notify("bo", "ana")
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await expect(bo.get_by_test_id("notifier-badge")).to_have_text("1")
    # Kill the socket under the client, as a network drop would (no clean close from it).
    await tab.page.evaluate(f"{BO_CLIENT}.socket.close(4000, 'killed by the test')")
    await server.notify("bo", "cy", "comment", target="photo:2")
    await expect(bo.get_by_test_id("notifier-badge")).to_have_text("2")
    stored = [g["id"] for g in (await server.feed("bo"))["groups"]]
    assert await held_ids(tab.page) == stored


async def test_a_hidden_tab_lets_go_of_its_socket_and_resumes_when_shown(
    server: Server, open_tab: Any
) -> None:
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    root = bo.locator(".notifier")
    await expect(root).to_have_attribute("data-status", "live")
    visibility = """(state) => {
        Object.defineProperty(document, "visibilityState", { value: state, configurable: true });
        document.dispatchEvent(new Event("visibilitychange"));
    }"""
    await tab.page.evaluate(f"{BO_CLIENT}.options.hiddenDisconnectMs = 0")
    await tab.page.evaluate(visibility, "hidden")
    await expect(root).to_have_attribute("data-status", "paused")
    assert await tab.page.evaluate(f"{BO_CLIENT}.socket") is None
    await server.notify("bo", "ana")
    await tab.page.evaluate(visibility, "visible")
    await expect(root).to_have_attribute("data-status", "live")
    await expect(bo.get_by_test_id("notifier-badge")).to_have_text("1")


async def test_an_inbox_opened_before_the_first_page_shows_that_page_as_opened(
    server_factory: ServerFactory, open_tab: Any, server: Server
) -> None:
    """Opened while the server is out of reach: when it answers, the first page is what the
    user opened (listed, and marked seen), not "new notifications" behind the banner."""
    other: Server = await server_factory(origins=(server.url,))
    await other.notify("bo", "ana")
    await other.notify("bo", "cy", "comment")
    await other.stop()
    tab: Tab = await open_tab()
    await tab.page.evaluate(
        """async ([url, token]) => {
            const { mount } = await import("/static/notifier.js");
            const host = document.createElement("div");
            host.dataset.testid = "early";
            document.body.prepend(host);
            mount(host, { server: url, token: () => token, backoff: { min: 50, max: 300 } });
        }""",
        [other.url, other.token("bo")],
    )
    early = tab.page.get_by_test_id("early")
    await early.get_by_test_id("notifier-bell").click()
    await expect(early.get_by_test_id("notifier-error")).to_be_visible()
    await other.start()
    await expect(early.get_by_test_id("notifier-item")).to_have_count(2)
    await expect(early.get_by_test_id("notifier-new-banner")).to_be_hidden()
    await expect(early.get_by_test_id("notifier-badge")).to_be_hidden()
    assert (await other.feed("bo"))["counts"]["unseen"] == 0


EMBED = """<!doctype html><html><body>
<header><div id="bell"></div></header>
<script type="module">
  import {{ mount }} from "{server}/static/notifier.js";
  window.widget = mount(document.querySelector("#bell"), {{
    server: "{server}", token: () => {token}, backoff: {{ min: 50, max: 200 }},
  }});
</script></body></html>"""


@contextlib.asynccontextmanager
async def app_page(server: Server, sock: socket.socket) -> AsyncIterator[str]:
    """Another site (its own origin: another port) whose page embeds bo's bell."""
    html = EMBED.format(server=server.url, token=json.dumps(server.token("bo")))

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(html)

    async with serve_site(Starlette(routes=[Route("/", page)]), sock) as url:
        yield url


async def test_the_widget_works_from_an_allowed_origin_and_not_from_others(
    server_factory: ServerFactory, context: BrowserContext
) -> None:
    allowed = bound_socket()
    server: Server = await server_factory(origins=(origin_of(allowed),))
    await server.notify("bo", "ana")
    async with app_page(server, allowed) as origin:
        allowed = await context.new_page()
        await allowed.goto(origin)
        await expect(allowed.get_by_test_id("notifier-badge")).to_have_text("1")
        await allowed.get_by_test_id("notifier-bell").click()
        await expect(allowed.get_by_test_id("notifier-item-text")).to_have_text(
            "ana liked your photo"
        )
    async with app_page(server, bound_socket()) as origin:
        foreign = await context.new_page()
        refused: list[str] = []
        foreign.on("console", lambda message: refused.append(message.text))
        await foreign.goto(origin)
        # The module loads (public files), the API and the websocket refuse the origin, and
        # the widget says so instead of staying blank.
        bell = foreign.get_by_test_id("notifier-bell")
        await expect(bell).to_have_attribute("aria-label", re.compile("offline|unavailable"))
        await bell.click()
        await expect(foreign.get_by_test_id("notifier-error")).to_contain_text(
            f"the server does not accept this site ({origin})"
        )
        assert any("NOTIFIER_ALLOWED_ORIGINS" in text for text in refused), refused
