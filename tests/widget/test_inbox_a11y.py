"""The axe-core scan of test_a11y.py, over the inbox's newer states: a category tab, the
archive, an item's menu, action buttons and their done state, the preferences, a toast and
an offline bell. No violation of impact serious or critical."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from playwright.async_api import Browser, Locator, expect

from tests.widget.conftest import Server
from tests.widget.test_a11y import (
    PHONE,
    State,
    assert_accessible,
    click,
    dark_theme,
    items,
    open_inbox,
)


async def with_actions(server: Server) -> None:
    """The feed of test_a11y's ``items``, and an invitation with two action buttons."""
    await items(server)
    actions = [{"label": "Accept", "event": "invite.accept"}, {"label": "View", "url": "/#/e/1"}]
    await server.notify("bo", "cy", "invite", target="event:1", extra={"actions": actions})


async def archive_first(server: Server, bo: Locator) -> None:
    await bo.get_by_test_id("notifier-archive").first.click()


async def menu(server: Server, bo: Locator) -> None:
    await bo.get_by_test_id("notifier-more").first.click()
    await expect(bo.get_by_role("menu")).to_be_visible()


async def act(server: Server, bo: Locator) -> None:
    await bo.get_by_role("button", name="Accept").click()
    await expect(bo.get_by_test_id("notifier-done")).to_be_visible()


async def preferences(server: Server, bo: Locator) -> None:
    await bo.get_by_test_id("notifier-settings").click()
    await expect(bo.locator("[data-testid=notifier-prefs] input").first).to_be_visible()


async def toast(server: Server, bo: Locator) -> None:
    await bo.locator("notifier-bell").evaluate("bell => bell.setAttribute('toast', '')")
    await server.notify("bo", "eve", "mention", target="post:3")
    await expect(bo.get_by_test_id("notifier-toast")).to_be_visible()


async def offline(server: Server, bo: Locator) -> None:
    await server.stop()
    await expect(bo.get_by_test_id("notifier-bell-offline")).to_be_visible()


Step = Callable[[Server, Locator], Awaitable[None]]

STATES = [
    State("category-tab", items, (open_inbox, click("notifier-tab-social"))),
    State("category-tab-dark", items, (dark_theme, open_inbox, click("notifier-tab-social"))),
    State("archive-tab", items, (open_inbox, archive_first, click("notifier-tab-archived"))),
    State("item-menu", items, (open_inbox, menu)),
    State("item-menu-phone", items, (open_inbox, menu), PHONE),
    State("item-menu-dark", items, (dark_theme, open_inbox, menu)),
    State("actions", with_actions, (open_inbox,)),
    State("actions-done", with_actions, (open_inbox, act)),
    State("actions-dark", with_actions, (dark_theme, open_inbox)),
    State("preferences", items, (open_inbox, preferences)),
    State("preferences-dark", items, (dark_theme, open_inbox, preferences)),
    State("toast", items, (toast,)),
    State("toast-dark", items, (dark_theme, toast)),
    State("offline-bell", items, (offline,)),
]


@pytest.mark.parametrize("state", STATES, ids=lambda state: state.name)
async def test_no_serious_or_critical_axe_violations_in_the_inbox_views(
    state: State, server: Server, browser: Browser
) -> None:
    await assert_accessible(state, server, browser)
