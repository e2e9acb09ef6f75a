"""The preferences view in a real browser against the real server: muting a category or a
verb from the inbox panel, critical categories shown but not mutable."""

from __future__ import annotations

from typing import Any

from playwright.async_api import BrowserContext, expect

from tests.services import bound_socket
from tests.widget.conftest import WAIT_MS, Server, ServerFactory, Tab, eventually, origin_of
from tests.widget.test_live import app_page


async def muted(server: Server) -> dict[str, list[str]]:
    response = await server.http.get("/v1/users/bo/preferences", headers=server.api())
    assert response.status_code == 200, response.text
    body: dict[str, list[str]] = response.json()["muted"]
    return body


async def test_muting_a_category_and_a_verb_from_the_panel(server: Server, open_tab: Any) -> None:
    await server.notify("bo", "ana")
    await server.notify("bo", "cy", "mention", target="post:1")
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await bo.get_by_test_id("notifier-bell").click()
    settings = bo.get_by_role("button", name="Notification settings")
    await settings.click()
    await expect(settings).to_have_attribute("aria-expanded", "true")
    prefs = bo.get_by_role("region", name="Notification settings")
    categories = prefs.get_by_role("group", name="Categories")
    social = categories.get_by_role("checkbox", name="Social")
    account = categories.get_by_role("checkbox", name="Account")
    await expect(social).to_be_checked()
    await expect(account).to_be_checked()
    await expect(account).to_be_disabled()  # critical: shown, never muted
    await expect(prefs).to_contain_text("Account (always on)")
    await expect(bo.get_by_role("tablist")).to_be_hidden()
    await social.uncheck()
    await expect(bo.get_by_test_id("notifier-prefs-status")).to_have_text("Saved")
    await eventually(lambda: muted_categories(server), ["social"])
    await (
        prefs.get_by_role("group", name="Activity")
        .get_by_role("checkbox", name="Mentions")
        .uncheck()
    )
    await expect(bo.get_by_test_id("notifier-prefs-status")).to_have_text("Saved")
    assert (await muted(server))["verbs"] == ["mention"]
    await bo.get_by_role("button", name="Back to notifications").click()
    await expect(settings).to_be_focused()
    await expect(bo.get_by_test_id("notifier-item")).to_have_count(2)
    await server.notify("bo", "dee", "comment", target="photo:3")  # social: muted
    await server.notify("bo", "eve", "share", target="photo:4")  # no category: arrives
    await expect(bo.get_by_test_id("notifier-new-banner")).to_have_text("1 new notification")
    assert "comment" not in {g["verb"] for g in (await server.feed("bo"))["groups"]}


async def muted_categories(server: Server) -> list[str]:
    return (await muted(server))["categories"]


async def test_preferences_are_saved_from_another_allowed_origin(
    server_factory: ServerFactory, context: BrowserContext
) -> None:
    sock = bound_socket()
    server: Server = await server_factory(origins=(origin_of(sock),))
    async with app_page(server, sock) as origin:
        page = await context.new_page()
        await page.goto(origin)
        await page.get_by_test_id("notifier-bell").click()
        await page.get_by_role("button", name="Notification settings").click()
        await page.get_by_role("checkbox", name="Social").uncheck(timeout=WAIT_MS)
        await expect(page.get_by_test_id("notifier-prefs-status")).to_have_text("Saved")


async def test_a_user_with_an_address_turns_email_digests_off_and_on(
    server: Server, open_tab: Any
) -> None:
    body = {"muted": {}, "email": "bo@example.com", "channels": {"email": ["social"]}}
    put = await server.http.put("/v1/users/bo/preferences", json=body, headers=server.api())
    assert put.status_code == 200, put.text
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await bo.get_by_test_id("notifier-bell").click()
    await bo.get_by_role("button", name="Notification settings").click()
    prefs = bo.get_by_role("region", name="Notification settings")
    email = prefs.get_by_role("group", name="Beyond this inbox").get_by_role(
        "checkbox", name="Email me a digest of what I miss"
    )
    await expect(email).to_be_checked()
    await email.uncheck()
    await expect(bo.get_by_test_id("notifier-prefs-status")).to_have_text("Saved")
    await eventually(lambda: channels(server), {"email": ["*", "social"]})
    await email.check()
    await expect(bo.get_by_test_id("notifier-prefs-status")).to_have_text("Saved")
    # Back on, the category the app had turned off stays off; the address is untouched.
    await eventually(lambda: channels(server), {"email": ["social"]})
    stored = await server.http.get("/v1/users/bo/preferences", headers=server.api())
    assert stored.json()["email"] == "bo@example.com"
    # A user without an address has no such box.
    ana = tab.user("ana")
    await ana.get_by_test_id("notifier-bell").click()
    await ana.get_by_role("button", name="Notification settings").click()
    await expect(ana.get_by_role("group", name="Categories")).to_be_visible()
    await expect(ana.get_by_role("group", name="Beyond this inbox")).to_have_count(0)


async def channels(server: Server) -> dict[str, list[str]]:
    response = await server.http.get("/v1/users/bo/preferences", headers=server.api())
    found: dict[str, list[str]] = response.json()["channels"]
    return found
