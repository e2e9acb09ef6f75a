"""The bell and the inbox in a real browser, on the demo page, against a real server: what a
user sees and what storage says after each thing the user does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.async_api import expect

from tests.services import free_port
from tests.widget.conftest import Server, Tab, eventually


async def open_inbox(column: Any) -> None:
    await column.get_by_test_id("notifier-bell").click()
    await expect(column.get_by_test_id("notifier-panel")).to_be_visible()


async def test_badge_shows_the_unseen_count(server: Server, open_tab: Any) -> None:
    await server.notify("bo", "ana", n=1)
    await server.notify("bo", "cy", n=2)  # same photo, same day: the same group
    await server.notify("bo", "ana", "comment")
    tab: Tab = await open_tab()
    badge = tab.user("bo").get_by_test_id("notifier-badge")
    await expect(badge).to_have_text("2")
    await expect(tab.user("bo").get_by_test_id("notifier-bell")).to_have_attribute(
        "aria-label", "Notifications, 2 unseen"
    )
    await expect(tab.user("ana").get_by_test_id("notifier-badge")).to_be_hidden()


async def test_badge_shows_99_plus_past_99_and_keeps_the_exact_count(
    server: Server, open_tab: Any
) -> None:
    await server.notify_many("bo", 120)
    counts = (await server.feed("bo"))["counts"]
    tab: Tab = await open_tab()
    badge = tab.user("bo").get_by_test_id("notifier-badge")
    await expect(badge).to_have_text("99+")
    await expect(badge).to_have_attribute("data-count", str(counts["unseen"]))
    await expect(tab.user("bo").get_by_test_id("notifier-bell")).to_have_attribute(
        "aria-label", f"Notifications, {counts['unseen']} unseen"
    )
    assert counts["unseen"] > 99


async def test_an_activity_posted_through_the_server_api_appears_live(
    server: Server, open_tab: Any
) -> None:
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await open_inbox(bo)
    await expect(bo.get_by_test_id("notifier-empty")).to_contain_text("You're all caught up")
    await bo.get_by_test_id("notifier-bell").click()  # close it again
    await server.notify("bo", "ana", extra={"avatar": "data:image/svg+xml,<svg/>"})
    await expect(bo.get_by_test_id("notifier-badge")).to_have_text("1")
    await open_inbox(bo)
    items = bo.get_by_test_id("notifier-item")
    await expect(items).to_have_count(1)
    await expect(items.first.get_by_test_id("notifier-item-text")).to_have_text(
        "ana liked your photo"
    )
    await expect(items.first.locator("img.notifier-avatar")).to_have_count(1)


async def test_opening_the_inbox_marks_seen_in_storage_too(server: Server, open_tab: Any) -> None:
    await server.notify("bo", "ana")
    await server.notify("bo", "cy", "comment")
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await expect(bo.get_by_test_id("notifier-badge")).to_have_text("2")
    await open_inbox(bo)
    await expect(bo.get_by_test_id("notifier-badge")).to_be_hidden()
    await expect(bo.get_by_test_id("notifier-item")).to_have_count(2)
    await eventually(lambda: unseen_unread(server, "bo"), (0, 2))


async def unseen_unread(server: Server, user: str) -> tuple[int, int]:
    counts = (await server.feed(user))["counts"]
    return counts["unseen"], counts["unread"]


async def test_clicking_an_item_marks_it_read_and_follows_its_url(
    server: Server, open_tab: Any
) -> None:
    await server.notify("bo", "ana", extra={"url": "#/photos/7"})
    await server.notify("bo", "cy", "comment", target="photo:2", extra={"url": "#/photos/2"})
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await open_inbox(bo)
    liked = bo.get_by_test_id("notifier-item").filter(has_text="liked")
    await expect(liked).to_have_attribute("data-read", "false")
    await liked.get_by_test_id("notifier-item-link").click()
    await expect(tab.page).to_have_url(re.compile(r"#/photos/7$"))
    await expect(liked).to_have_attribute("data-read", "true")
    groups = {g["verb"]: g for g in (await server.feed("bo"))["groups"]}
    assert groups["like"]["is_read"] is True
    assert groups["comment"]["is_read"] is False


async def test_mark_all_as_read(server: Server, open_tab: Any) -> None:
    for n, verb in enumerate(["like", "comment", "mention"]):
        await server.notify("bo", "ana", verb, n=n, target=f"photo:{n}")
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await open_inbox(bo)
    await expect(bo.locator('[data-testid="notifier-item"][data-read="false"]')).to_have_count(3)
    await bo.get_by_test_id("notifier-mark-all").click()
    await expect(bo.locator('[data-testid="notifier-item"][data-read="true"]')).to_have_count(3)
    await eventually(lambda: unseen_unread(server, "bo"), (0, 0))
    await expect(bo.get_by_test_id("notifier-mark-all")).to_be_disabled()


async def test_each_item_can_be_marked_read_unread_and_archived(
    server: Server, open_tab: Any
) -> None:
    await server.notify("bo", "ana")
    await server.notify("bo", "cy", "comment")
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await open_inbox(bo)
    liked = bo.get_by_test_id("notifier-item").filter(has_text="liked")
    toggle = liked.get_by_test_id("notifier-toggle-read")
    await expect(toggle).to_have_attribute("aria-label", "Mark as read")
    await toggle.click()
    await expect(liked).to_have_attribute("data-read", "true")
    await eventually(lambda: flags(server, "like"), (True, False))
    await expect(toggle).to_have_attribute("aria-label", "Mark as unread")
    await toggle.click()
    await expect(liked).to_have_attribute("data-read", "false")
    await eventually(lambda: flags(server, "like"), (False, False))
    await liked.get_by_test_id("notifier-archive").click()
    await expect(bo.get_by_test_id("notifier-item")).to_have_count(1)
    await eventually(lambda: flags(server, "like"), (False, True))


async def flags(server: Server, verb: str) -> tuple[bool, bool]:
    (group,) = [g for g in (await server.feed("bo"))["groups"] if g["verb"] == verb]
    return group["is_read"], group["is_archived"]


async def test_aggregated_items_name_the_newest_actor_and_count_the_others(
    server: Server, open_tab: Any
) -> None:
    for n, actor in enumerate(["ana", "cy", "dee", "eve"]):
        await server.notify(
            "bo", actor, n=n, extra={"avatar": f"data:image/svg+xml,<svg>{n}</svg>"}
        )
    await server.notify("bo", "ana", "comment", n=9)
    await server.notify("bo", "cy", "comment", n=10)
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await open_inbox(bo)
    texts = bo.get_by_test_id("notifier-item-text")
    await expect(texts).to_have_text(["cy and ana commented on your photo",
                                      "eve and 3 others liked your photo"])  # fmt: skip
    liked = bo.get_by_test_id("notifier-item").filter(has_text="liked")
    await expect(liked.locator("img.notifier-avatar")).to_have_count(3)  # at most three shown


async def test_an_open_list_shows_a_banner_instead_of_reshuffling(
    server: Server, open_tab: Any
) -> None:
    await server.notify("bo", "ana", "comment")
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await open_inbox(bo)
    await expect(bo.get_by_test_id("notifier-item")).to_have_count(1)
    await server.notify("bo", "cy", "mention", target="post:1")
    banner = bo.get_by_test_id("notifier-new-banner")
    await expect(banner).to_have_text("1 new notification")
    await expect(bo.get_by_test_id("notifier-item")).to_have_count(1)  # not yet in the list
    await expect(bo.get_by_test_id("notifier-badge")).to_have_text("1")
    await banner.click()
    await expect(bo.get_by_test_id("notifier-item-text")).to_have_text(
        ["cy mentioned your photo", "ana commented on your photo"]
    )
    await expect(banner).to_be_hidden()
    await expect(bo.get_by_test_id("notifier-badge")).to_be_hidden()


async def test_scrolling_down_loads_older_pages_with_the_cursor(
    server: Server, open_tab: Any
) -> None:
    await server.notify_many("bo", 45)
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await open_inbox(bo)
    items = bo.get_by_test_id("notifier-item")
    await expect(items).to_have_count(20)  # the widget's page size
    for expected in (40, 45):
        await items.last.scroll_into_view_if_needed()
        await expect(items).to_have_count(expected)
    ids = await items.evaluate_all("rows => rows.map(r => r.dataset.id)")
    stored = [g["id"] for g in (await server.feed("bo"))["groups"]]
    assert ids == stored  # every group once, in feed order


async def test_the_inbox_is_keyboard_accessible(server: Server, open_tab: Any) -> None:
    await server.notify("bo", "ana")
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    bell = bo.get_by_test_id("notifier-bell")
    await expect(bo.get_by_test_id("notifier-badge")).to_have_text("1")
    await bell.focus()
    await tab.page.keyboard.press("Enter")
    panel = bo.get_by_role("dialog", name="Notifications")
    await expect(panel).to_be_visible()
    await expect(bell).to_have_attribute("aria-expanded", "true")
    await expect(bo.get_by_test_id("notifier-announce")).to_have_attribute("aria-live", "polite")
    await tab.page.keyboard.press("Tab")
    await expect(bo.get_by_test_id("notifier-mark-all")).to_be_focused()
    await tab.page.keyboard.press("Escape")
    await expect(panel).to_be_hidden()
    await expect(bell).to_be_focused()
    await expect(bell).to_have_attribute("aria-expanded", "false")


async def test_the_badge_count_is_announced_politely(server: Server, open_tab: Any) -> None:
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await expect(tab.page.locator('[data-testid="user-bo"] .notifier[data-state="ready"]')) \
        .to_have_count(1)  # fmt: skip
    await server.notify("bo", "ana")
    await expect(bo.get_by_test_id("notifier-announce")).to_have_text("1 unseen notification")


async def test_strings_follow_the_locale(server: Server, open_tab: Any) -> None:
    title = {"en": "your photo", "fr": "votre photo"}
    for n, actor in enumerate(["ana", "cy", "dee"]):
        await server.notify("bo", actor, n=n, extra={"title": title})
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await tab.page.get_by_test_id("demo-locale").select_option("fr")
    await open_inbox(bo)
    await expect(bo.get_by_test_id("notifier-item-text")).to_have_text(
        "dee et 2 autres ont aimé votre photo"
    )
    await expect(bo.get_by_test_id("notifier-mark-all")).to_have_text("Tout marquer comme lu")


async def test_relative_times_use_the_users_time_zone(server: Server, open_tab: Any) -> None:
    tab: Tab = await open_tab()
    # 10:30Z is 23:30 on March 1st in Auckland (UTC+13); 12:00Z is 01:00 on March 2nd there.
    script = """async ([zone]) => {
        const { relativeTime } = await import("/static/notifier.js");
        const options = { now: new Date("2026-03-01T12:00:00Z"), timeZone: zone };
        return relativeTime(new Date("2026-03-01T10:30:00Z"), options);
    }"""
    assert await tab.page.evaluate(script, ["Pacific/Auckland"]) == "yesterday"
    assert await tab.page.evaluate(script, ["UTC"]) == "1 hour ago"


async def test_an_unreachable_server_shows_an_error_state(server: Server, open_tab: Any) -> None:
    tab: Tab = await open_tab()
    await tab.page.evaluate(
        """async (url) => {
            const { mount } = await import("/static/notifier.js");
            const host = document.createElement("div");
            host.dataset.testid = "unreachable";
            document.body.prepend(host);
            const backoff = { min: 50, max: 200 };
            mount(host, { server: url, token: () => "no-server-here", backoff });
        }""",
        f"http://127.0.0.1:{free_port()}",  # nothing listens there
    )
    host = tab.page.get_by_test_id("unreachable")
    await host.get_by_test_id("notifier-bell").click()
    error = host.get_by_test_id("notifier-error")
    await expect(error).to_contain_text("can't be reached")
    await expect(error.get_by_role("button", name="Try again")).to_be_visible()


async def test_a_screenshot_of_the_open_inbox(
    server: Server, open_tab: Any, artifacts: Path
) -> None:
    from notifier.demo import seed

    await seed(server.services)
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await expect(bo.get_by_test_id("notifier-badge")).to_have_text("4")
    await open_inbox(bo)
    await expect(bo.get_by_test_id("notifier-item")).to_have_count(4)
    path = artifacts / "widget-inbox.png"
    await tab.page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000
