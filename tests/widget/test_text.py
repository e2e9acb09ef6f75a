"""What the widget says, in a real browser: items without a title read as sentences (never
raw ids), and the demo page in French is French throughout."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import expect

from tests.widget.conftest import Server, Tab


async def post(server: Server, **activity: Any) -> None:
    """An activity for bo exactly as given (no ``extra`` added)."""
    body = {"to": ["notification:bo"], **activity}
    response = await server.http.post("/v1/activities", json=body, headers=server.api())
    assert response.status_code == 201, response.text


async def test_an_activity_without_a_title_reads_from_the_type_of_what_it_names(
    server: Server, open_tab: Any
) -> None:
    await post(server, actor="ana", verb="like", object="like:1", target="photo:1")
    await post(server, actor="cy", verb="share", object="photo:9")
    await post(server, actor="dee", verb="follow", object="follow:1", target="user:bo")
    await post(server, actor="eve", verb="comment", object="c:1", target="blog_post:7")
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await bo.get_by_test_id("notifier-bell").click()
    await expect(bo.get_by_test_id("notifier-item-text")).to_have_text(
        [
            "eve commented on your blog post",
            "dee started following you",
            "cy shared a photo",
            "ana liked your photo",
        ]
    )
    await tab.page.get_by_test_id("demo-locale").select_option("fr")
    await expect(bo.get_by_test_id("notifier-item-text")).to_have_text(
        [
            "eve a commenté votre blog post",
            "dee vous suit",
            "cy a partagé un(e) photo",
            "ana a aimé votre photo",
        ]
    )


ENGLISH = re.compile(
    r"\b(your|you|liked|like|comment|commented|follow|following|mention|mentioned|Act as"
    r"|Language|Dark theme|others|Mark|read|unread|Archive|Archived|All|More|ago|yesterday"
    r"|unseen|opened|Delete|Snooze|Settings|offline)\b"
)


async def test_the_demo_page_in_french_is_french_throughout(server: Server, open_tab: Any) -> None:
    from notifier.demo import seed

    await seed(server.services)
    tab: Tab = await open_tab()
    bo = tab.user("bo")
    await expect(bo.get_by_test_id("notifier-badge")).to_have_text("4")
    await tab.page.get_by_test_id("demo-locale").select_option("fr")
    await bo.get_by_test_id("notifier-bell").click()
    await expect(bo.get_by_test_id("notifier-item")).to_have_count(4)
    await bo.get_by_test_id("notifier-item-link").first.click()  # "bo a ouvert …"
    await expect(bo.get_by_test_id("route-bo")).to_contain_text("a ouvert")
    await bo.get_by_test_id("notifier-bell").click()
    await expect(bo.get_by_test_id("notifier-item-text")).to_have_text(
        [
            "ana a commenté votre photo",
            "dee et 2 autres ont aimé votre photo",
            "cy vous a mentionné",
            "eve vous suit",
        ]
    )
    text = await tab.page.locator("body").inner_text()
    text = text.replace("English", "")  # the language's own name, in the language menu
    labels = await tab.page.locator("[aria-label], [title]").evaluate_all(
        "nodes => nodes.map(n => `${n.getAttribute('aria-label') ?? ''} ${n.title ?? ''}`)"
    )
    english = ENGLISH.findall(text + "\n" + "\n".join(labels))
    assert not english, (english, text)
    assert await tab.page.evaluate("document.documentElement.lang") == "fr"
