"""`<notifier-bell>` takes changes after it started, in a real browser: the `theme` attribute
and the `options` property apply at once (in place, or by mounting the widget again)."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tests.widget.conftest import Server, Tab

BO_BELL = '[data-testid="user-bo"] notifier-bell'


async def test_the_theme_attribute_is_watched(server: Server, open_tab: Any) -> None:
    tab: Tab = await open_tab()
    root = tab.user("bo").locator(".notifier")
    await expect(root).to_have_attribute("data-status", "live")
    await expect(root).to_have_attribute("data-theme", "auto")
    await tab.page.locator(BO_BELL).evaluate("bell => bell.setAttribute('theme', 'dark')")
    await expect(root).to_have_attribute("data-theme", "dark")
    await tab.page.get_by_test_id("demo-dark").check()  # the demo's switch sets it too
    await tab.page.get_by_test_id("demo-dark").uncheck()
    await expect(root).to_have_attribute("data-theme", "light")
    panel_bg = "node => getComputedStyle(node).backgroundColor"
    await tab.user("bo").get_by_test_id("notifier-bell").click()
    assert await tab.user("bo").get_by_test_id("notifier-panel").evaluate(panel_bg) == (
        "rgb(255, 255, 255)"
    )


async def test_options_set_after_start_apply(server: Server, open_tab: Any) -> None:
    await server.notify("bo", "ana", extra={"url": "#/photos/7"})
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await expect(bo.locator(".notifier")).to_have_attribute("data-status", "live")
    client_before = await tab.page.locator(BO_BELL).evaluate("bell => (window.c = bell.client, 1)")
    assert client_before == 1
    await tab.page.locator(BO_BELL).evaluate(
        """bell => bell.options = {
            theme: "dark", locale: "fr",
            onItemClick: (item) => { window.clicked = item.verb; return false; },
        }"""
    )
    await expect(bo.locator(".notifier")).to_have_attribute("data-theme", "dark")
    await bo.get_by_test_id("notifier-bell").click()
    await expect(bo.get_by_test_id("notifier-mark-all")).to_have_text("Tout marquer comme lu")
    await bo.get_by_test_id("notifier-item-link").click()
    assert await tab.page.evaluate("window.clicked") == "like"
    assert not tab.page.url.endswith("#/photos/7")  # the callback kept the page where it was
    # Those applied in place: the same connection.
    assert await tab.page.locator(BO_BELL).evaluate("bell => bell.client === window.c")
    # As a framework re-rendering does: equal values in new objects, a new token function.
    rerender = """bell => bell.options = { ...bell.options, backoff: { min: 500, max: 30000 },
        token: async () => (await (await fetch("/demo/token/bo", { method: "POST" }))
            .json()).token }"""
    await tab.page.locator(BO_BELL).evaluate(rerender)  # backoff is new: mounted again
    await tab.page.locator(BO_BELL).evaluate("bell => (window.c = bell.client, 1)")
    await tab.page.locator(BO_BELL).evaluate(rerender)
    assert await tab.page.locator(BO_BELL).evaluate("bell => bell.client === window.c")
    assert await tab.page.evaluate("window.c.token(true).then((t) => t.length > 20)")
    await expect(bo.locator(".notifier")).to_have_attribute("data-status", "live")
    # A feed of its own (or a server, a token) needs a new connection: mounted again.
    await tab.page.locator(BO_BELL).evaluate(
        "bell => bell.options = { ...bell.options, categories: ['social'] }"
    )
    await expect(bo.get_by_test_id("notifier-tab-social")).to_have_count(1)
    assert await tab.page.locator(BO_BELL).evaluate("bell => bell.client !== window.c")
    await expect(bo.locator(".notifier")).to_have_attribute("data-status", "live")
    assert await tab.page.evaluate("window.c.status") == "closed"
