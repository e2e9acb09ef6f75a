"""Where the widget is drawn and in which colours, in a real browser: a panel that stays on
the screen (a sheet on a phone), a bell in the page's text colour, and item buttons that can
be seen and read by everyone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.widget.conftest import Server, Tab

PHONE = {"width": 390, "height": 844}

LEFT_BELL = """(header) => {
    const bar = document.createElement("header");
    bar.dataset.testid = "bar";
    bar.style.cssText = header;
    const bell = document.createElement("notifier-bell");
    bell.setAttribute("token-url", "/demo/token/bo");
    bell.setAttribute("theme", "light");
    bar.append(bell, Object.assign(document.createElement("span"), { textContent: "My app" }));
    document.body.prepend(bar);
}"""


@pytest.fixture
async def phone(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A 390 x 844 touch screen (a phone)."""
    context = await browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    yield context
    await context.close()


async def demo_on(context: BrowserContext, server: Server) -> Page:
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(server.url + "/")
    page.errors = errors  # type: ignore[attr-defined]
    return page


async def inside_viewport(page: Page, locator: Any) -> dict[str, float]:
    box = await locator.bounding_box()
    assert box is not None
    width = await page.evaluate("document.documentElement.clientWidth")
    assert box["x"] >= 0, box
    assert box["x"] + box["width"] <= width + 0.5, (box, width)
    return box  # type: ignore[no-any-return]


async def test_on_a_phone_the_panel_is_a_full_width_sheet_on_the_screen(
    server: Server, phone: BrowserContext
) -> None:
    await server.notify("bo", "ana")
    page = await demo_on(phone, server)
    bo = page.get_by_test_id("user-bo")
    await expect(bo.get_by_test_id("notifier-badge")).to_have_text("1")
    await bo.get_by_test_id("notifier-bell").tap()
    panel = bo.get_by_test_id("notifier-panel")
    await expect(panel).to_be_visible()
    box = await inside_viewport(page, panel)
    assert box["width"] >= PHONE["width"] - 1  # the width of the screen
    assert box["y"] + box["height"] <= PHONE["height"] + 0.5
    await expect(bo.get_by_test_id("notifier-close")).to_be_visible()  # no Escape key on a phone
    await bo.get_by_test_id("notifier-close").tap()
    await expect(panel).to_be_hidden()
    assert not page.errors  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", ["phone", "desktop"])
async def test_a_bell_on_the_left_of_a_header_opens_its_panel_inside_the_viewport(
    server: Server, phone: BrowserContext, context: BrowserContext, size: str
) -> None:
    page = await demo_on(phone if size == "phone" else context, server)
    await page.evaluate(LEFT_BELL, "display: flex; gap: 8px; padding: 8px")
    bar = page.get_by_test_id("bar")
    await expect(bar.locator(".notifier")).to_have_attribute("data-status", "live")
    await bar.get_by_test_id("notifier-bell").click()
    panel = bar.get_by_test_id("notifier-panel")
    await expect(panel).to_be_visible()
    box = await inside_viewport(page, panel)
    assert box["width"] > 300


async def colour(locator: Any) -> str:
    value: str = await locator.evaluate("node => getComputedStyle(node).color")
    return value


async def test_the_bell_takes_the_page_text_colour_and_the_panel_keeps_its_own(
    server: Server, open_tab: Any
) -> None:
    tab: Tab = await open_tab()
    await tab.page.evaluate(LEFT_BELL, "display: flex; background: #101418; color: #ffffff")
    bar = tab.page.get_by_test_id("bar")
    bell = bar.get_by_test_id("notifier-bell")
    await expect(bar.locator(".notifier")).to_have_attribute("data-status", "live")
    assert await colour(bell) == "rgb(255, 255, 255)"  # white on the dark header
    await bell.click()
    panel = bar.get_by_test_id("notifier-panel")
    assert await colour(panel) == "rgb(31, 35, 40)"  # the light panel's own dark text
    await bar.locator("notifier-bell").evaluate(
        "node => node.style.setProperty('--notifier-bell-color', 'rgb(255, 200, 0)')"
    )
    assert await colour(bell) == "rgb(255, 200, 0)"
    assert await colour(panel) == "rgb(31, 35, 40)"  # the bell's colour is the bell's only


CONTRAST = """(node) => {
    const rgb = (value) => value.match(/[\\d.]+/g).map(Number);
    let opacity = 1;
    for (let n = node; n; n = n.parentElement) opacity *= Number(getComputedStyle(n).opacity);
    let background = [255, 255, 255];
    for (let n = node; n; n = n.parentElement) {
        const c = rgb(getComputedStyle(n).backgroundColor);
        if (c.length < 4 || c[3] > 0) { background = c.slice(0, 3); break; }
    }
    return { fg: rgb(getComputedStyle(node).color).slice(0, 3), bg: background, opacity };
}"""


def contrast(fg: list[float], bg: list[float], opacity: float) -> float:
    """WCAG contrast of ``fg`` drawn at ``opacity`` over ``bg``."""

    def luminance(rgb: list[float]) -> float:
        def channel(c: float) -> float:
            c /= 255
            return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

        r, g, b = (channel(c) for c in rgb)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    shown = [b + (f - b) * opacity for f, b in zip(fg, bg, strict=True)]
    high, low = sorted((luminance(shown), luminance(bg)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("theme", ["light", "dark"])
async def test_item_buttons_have_3_to_1_contrast_on_a_touch_screen_and_say_what_they_do(
    server: Server, phone: BrowserContext, theme: str
) -> None:
    await server.notify("bo", "ana")
    await server.notify("bo", "cy", "comment")
    page = await demo_on(phone, server)
    bo = page.get_by_test_id("user-bo")
    await bo.locator("notifier-bell").evaluate(f"node => node.setAttribute('theme', '{theme}')")
    await bo.get_by_test_id("notifier-bell").tap()
    liked = bo.get_by_test_id("notifier-item").filter(has_text="liked")
    await liked.get_by_role("button", name="Mark as read").tap()
    await expect(liked).to_have_attribute("data-read", "true")
    await page.get_by_test_id("demo-locale").focus()  # nothing hovered or focused in the row
    faint, glyphs = [], []
    for button in await bo.locator(".notifier-item .notifier-icon").all():
        seen = await button.evaluate(CONTRAST)
        ratio = contrast(seen["fg"], seen["bg"], seen["opacity"])
        name = await button.get_attribute("aria-label")
        if ratio < 3:
            faint.append(f"{name}: {ratio:.2f}:1 ({seen})")
        if (await button.inner_text()).strip() or await button.locator("svg").count() != 1:
            glyphs.append(f"{name}: {await button.inner_text()!r}")  # an icon, not "○"
    assert not faint
    assert not glyphs
    unread = liked.get_by_role("button", name="Mark as unread")
    await expect(unread).to_have_attribute("title", "Mark as unread")
    await expect(liked.get_by_role("button", name="Archive")).to_be_visible()
    await expect(liked.get_by_role("button", name="More actions")).to_be_visible()
