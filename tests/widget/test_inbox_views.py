"""Tabs, the archive, action buttons, snooze, delete and the toast, in a real browser against
the real server: what the user sees and what storage says after each step."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.async_api import expect

from tests.widget.conftest import Server, Tab, eventually

UNREAD = '[data-testid="notifier-item"][data-read="false"]'


async def open_inbox(column: Any) -> None:
    await column.get_by_test_id("notifier-bell").click()
    await expect(column.get_by_test_id("notifier-panel")).to_be_visible()


async def groups(server: Server, status: str = "all") -> dict[str, dict[str, Any]]:
    """bo's groups by verb, as storage has them."""
    return {g["verb"]: g for g in (await server.feed("bo", status=status))["groups"]}


async def three(server: Server) -> None:
    """A like and a comment (category social) and a mention (category mentions)."""
    await server.notify("bo", "ana", "like")
    await server.notify("bo", "cy", "mention", target="post:1", extra={"title": "you"})
    await server.notify("bo", "dee", "comment", target="photo:2")


async def test_category_tabs_list_their_items_with_unread_counts(
    server: Server, open_tab: Any
) -> None:
    await three(server)
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await open_inbox(bo)
    tabs = bo.get_by_role("tab")
    await expect(tabs).to_have_text(["All 3 unread", "Social 2 unread", "Mentions 1 unread",
                                     "Archived"])  # fmt: skip
    await expect(bo.get_by_role("tab", name="All 3 unread")).to_have_attribute(
        "aria-selected", "true"
    )
    await expect(bo.get_by_test_id("notifier-item")).to_have_count(3)
    await bo.get_by_role("tab", name=re.compile("^Social")).click()
    await expect(bo.get_by_test_id("notifier-item-text")).to_have_text(
        ["dee commented on your photo", "ana liked your photo"]
    )
    await expect(bo.get_by_role("tabpanel")).to_be_visible()
    await bo.get_by_test_id("notifier-mark-all").click()  # this tab's only
    await eventually(lambda: read_flags(server), {"like": True, "comment": True, "mention": False})
    await expect(bo.get_by_test_id("notifier-tab-social")).to_have_text("Social")
    await expect(bo.get_by_test_id("notifier-tab-all")).to_have_text("All 1 unread")
    # Arrow keys move between tabs (one tab stop for the list of tabs).
    await bo.get_by_test_id("notifier-tab-social").focus()
    await tab.page.keyboard.press("ArrowRight")
    await expect(bo.get_by_test_id("notifier-tab-mentions")).to_be_focused()
    await expect(bo.get_by_test_id("notifier-item-text")).to_have_text(["cy mentioned you"])


async def read_flags(server: Server) -> dict[str, bool]:
    return {verb: g["is_read"] for verb, g in (await groups(server)).items()}


async def test_the_archive_tab_lists_archived_items_and_brings_them_back(
    server: Server, open_tab: Any
) -> None:
    await three(server)
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await open_inbox(bo)
    liked = bo.get_by_test_id("notifier-item").filter(has_text="liked")
    await liked.get_by_role("button", name="Archive").click()
    await expect(bo.get_by_test_id("notifier-item")).to_have_count(2)
    await bo.get_by_test_id("notifier-tab-archived").click()
    await expect(bo.get_by_test_id("notifier-item-text")).to_have_text(["ana liked your photo"])
    await expect(bo.get_by_test_id("notifier-mark-all")).to_be_hidden()
    await bo.get_by_role("button", name="Move back to the inbox").click()
    await expect(bo.get_by_test_id("notifier-empty")).to_have_text("Nothing archived.")
    await eventually(lambda: archived(server), set())
    await bo.get_by_test_id("notifier-tab-all").click()
    await expect(bo.get_by_test_id("notifier-item")).to_have_count(3)
    # "Archive all read": only the read ones go.
    for verb in ("comment", "mention"):
        row = bo.locator(
            f'[data-testid="notifier-item"][data-id="{(await groups(server))[verb]["id"]}"]'
        )
        await row.get_by_role("button", name="Mark as read").click()
        await expect(row).to_have_attribute("data-read", "true")
    await bo.get_by_test_id("notifier-archive-read").click()
    await expect(bo.get_by_test_id("notifier-item-text")).to_have_text(["ana liked your photo"])
    await eventually(lambda: archived(server), {"comment", "mention"})
    await bo.get_by_test_id("notifier-tab-archived").click()
    await expect(bo.get_by_test_id("notifier-item")).to_have_count(2)


async def archived(server: Server) -> set[str]:
    return {verb for verb, g in (await groups(server)).items() if g["is_archived"]}


ACTIONS = [{"label": "Accept", "event": "invite.accept"}, {"label": "View", "url": "/#/invites/1"}]


async def test_an_event_action_dispatches_a_dom_event_and_marks_the_item_done(
    server: Server, open_tab: Any
) -> None:
    await server.notify("bo", "ana", "invite", target="event:1",
                        extra={"title": "you to a party", "actions": ACTIONS})  # fmt: skip
    tab: Tab = await open_tab()
    await tab.page.evaluate(
        """() => document.addEventListener("notifier:action", (event) => {
            window.acted = { event: event.detail.event, item: event.detail.item.id,
                             activity: event.detail.activity.id, from: event.target.tagName };
        })"""
    )
    bo = tab.user("bo")
    await open_inbox(bo)
    item = bo.get_by_test_id("notifier-item")
    await expect(item.get_by_test_id("notifier-action")).to_have_text(["Accept", "View"])
    await item.get_by_role("button", name="Accept").click()
    await expect(item.get_by_test_id("notifier-done")).to_have_text("✓ Done")
    await expect(item).to_have_attribute("data-done", "true")
    group = (await groups(server))["invite"]
    acted = await tab.page.evaluate("window.acted")
    assert acted == {"event": "invite.accept", "item": group["id"],
                     "activity": group["activities"][0]["id"], "from": "NOTIFIER-BELL"}  # fmt: skip
    await eventually(lambda: done_and_read(server, "invite"), (True, True))


async def done_and_read(server: Server, verb: str) -> tuple[bool, bool]:
    group = (await groups(server))[verb]
    return group["is_done"], group["is_read"]


async def test_a_url_action_goes_there_and_marks_the_item_done(
    server: Server, open_tab: Any
) -> None:
    await server.notify("bo", "ana", "invite", target="event:1", extra={"actions": ACTIONS})
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await open_inbox(bo)
    await bo.get_by_role("button", name="View").click()
    await expect(tab.page).to_have_url(re.compile(r"#/invites/1$"))
    await eventually(lambda: done_and_read(server, "invite"), (True, True))


async def test_snooze_hides_an_item_until_its_time_and_delete_removes_it_for_good(
    server: Server, open_tab: Any
) -> None:
    await three(server)
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await open_inbox(bo)
    liked = bo.get_by_test_id("notifier-item").filter(has_text="liked")
    more = liked.get_by_role("button", name="More actions")
    await more.click()
    menu = liked.get_by_role("menu")
    await expect(menu.get_by_role("menuitem")).to_have_text(
        ["Snooze for 1 hour", "Snooze until tomorrow", "Delete"]
    )
    await expect(menu.get_by_role("menuitem", name="Snooze for 1 hour")).to_be_focused()
    await tab.page.keyboard.press("Escape")  # closes the menu, not the inbox
    await expect(menu).to_be_hidden()
    await expect(more).to_be_focused()
    await expect(bo.get_by_test_id("notifier-panel")).to_be_visible()
    await more.press("Enter")
    await tab.page.keyboard.press("Enter")  # the first entry
    await expect(bo.get_by_test_id("notifier-item")).to_have_count(2)  # at once, locally
    await eventually(lambda: verbs(server, "snoozed"), {"like"})  # and in storage
    snoozed = (await groups(server, "snoozed"))["like"]
    until = datetime.fromisoformat(snoozed["snoozed_until"])
    assert timedelta(minutes=59) < until - datetime.now(UTC) <= timedelta(hours=1)
    commented = bo.get_by_test_id("notifier-item").filter(has_text="commented")
    await commented.get_by_role("button", name="More actions").click()
    await commented.get_by_role("menuitem", name="Delete").click()
    await expect(bo.get_by_test_id("notifier-item-text")).to_have_text(["cy mentioned you"])
    await eventually(lambda: verbs(server), {"like", "mention"})
    await expect(bo.get_by_test_id("notifier-item").first.locator("a")).to_be_focused()


async def verbs(server: Server, status: str = "all") -> set[str]:
    return set(await groups(server, status))


async def test_a_group_snoozed_elsewhere_arrives_live_and_stays_out_of_the_inbox(
    server: Server, open_tab: Any
) -> None:
    await three(server)
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await open_inbox(bo)
    await expect(bo.get_by_test_id("notifier-item")).to_have_count(3)
    mention = (await groups(server))["mention"]
    until = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    response = await server.http.post(
        "/v1/feeds/notification/bo/snooze",
        json={"group_ids": [mention["id"]], "until": until},
        headers=server.api(),
    )
    assert response.status_code == 200, response.text
    await expect(bo.get_by_test_id("notifier-item")).to_have_count(2)
    held = await tab.page.evaluate(
        """() => document.querySelector("[data-testid=user-bo] notifier-bell").client
            .items({ status: "all" }).filter((g) => g.verb === "mention")
            .map((g) => [g.is_archived, Boolean(g.snoozed_until)])"""
    )
    assert held == [[True, True]]  # held, as the socket sent it, but not shown
    await bo.get_by_test_id("notifier-tab-archived").click()
    await expect(bo.get_by_test_id("notifier-empty")).to_be_visible()  # nor as archived


async def test_a_toast_says_what_arrived_when_asked_for_without_taking_the_focus(
    server: Server, open_tab: Any
) -> None:
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await expect(bo.locator(".notifier")).to_have_attribute("data-status", "live")
    await server.notify("bo", "ana")
    await expect(bo.get_by_test_id("notifier-badge")).to_have_text("1")
    await expect(bo.get_by_test_id("notifier-toast")).to_have_count(0)  # off by default
    await bo.locator("notifier-bell").evaluate("bell => bell.setAttribute('toast', '')")
    button = tab.page.get_by_test_id("act-bo-like")
    await button.focus()
    await server.notify("bo", "cy", "comment")
    toast = bo.get_by_test_id("notifier-toast")
    await expect(toast).to_have_text("cy commented on your photo")
    await expect(
        bo.get_by_role("status").filter(has=tab.page.get_by_test_id("notifier-toast"))
    ).to_have_count(1)
    await expect(button).to_be_focused()
    await open_inbox(bo)
    await expect(toast).to_have_count(0)  # opening the inbox dismisses it
