"""An axe-core scan of the demo page (its widgets included) in each state a user sees: no
violation of impact serious or critical. Every violation found, of any impact, is in the
failure message.

A state is one line of ``STATES``: what bo's feed holds, the steps that bring the page there
(each a step function below, or ``click("<data-testid>")``), and the device."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.async_api import Browser, Locator, expect

from tests.widget.conftest import Server
from tests.widget.npm import node_modules

Step = Callable[[Server, Locator], Awaitable[None]]

DESKTOP: Mapping[str, Any] = {"viewport": {"width": 1100, "height": 760}}
PHONE: Mapping[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "has_touch": True,
    "is_mobile": True,
}
FAILING_IMPACTS = ("serious", "critical")


async def nothing(server: Server) -> None:
    """An empty feed."""


async def items(server: Server) -> None:
    """A group of three likes (two avatars, one initial), an unread comment, a read mention."""
    for n, actor in enumerate(["ana", "cy", "dee"]):
        avatar = {"avatar": f"data:image/svg+xml,<svg>{n}</svg>"} if actor != "dee" else {}
        await server.notify("bo", actor, n=n, extra=avatar)
    await server.notify("bo", "eve", "comment")
    read = await server.notify("bo", "ana", "mention", target="post:1")
    response = await server.http.post(
        "/v1/feeds/notification/bo/mark",
        json={"read": True, "activity_ids": [read]},
        headers=server.api(),
    )
    assert response.status_code == 200, response.text


async def open_inbox(server: Server, bo: Locator) -> None:
    await bo.get_by_test_id("notifier-bell").click()
    await expect(bo.get_by_test_id("notifier-panel")).to_be_visible()
    await expect(bo.locator('.notifier[data-state="ready"]')).to_have_count(1)


async def new_arrival(server: Server, bo: Locator) -> None:
    """An unseen item arrives while the inbox is open: the "1 new notification" banner."""
    await server.notify("bo", "eve", "mention", target="post:2")
    await expect(bo.get_by_test_id("notifier-new-banner")).to_be_visible()


async def dark_theme(server: Server, bo: Locator) -> None:
    """The demo page's dark theme (the widgets' data-theme="dark" too)."""
    await bo.page.get_by_test_id("demo-dark").check()


def click(test_id: str) -> Step:
    """A step that clicks bo's element with this ``data-testid`` (it must be there)."""

    async def step(server: Server, bo: Locator) -> None:
        await bo.get_by_test_id(test_id).click()

    return step


@dataclass(frozen=True)
class State:
    name: str
    feed: Callable[[Server], Awaitable[None]]
    steps: tuple[Step, ...] = ()
    device: Mapping[str, Any] = field(default_factory=lambda: DESKTOP)


STATES = [
    State("closed-bell-with-badge", items),
    State("open-with-items", items, (open_inbox, new_arrival)),
    State("open-with-items-phone", items, (open_inbox, new_arrival), PHONE),
    State("open-with-items-dark", items, (dark_theme, open_inbox, new_arrival)),
    State("empty-inbox", nothing, (open_inbox,)),
]


@pytest.mark.parametrize("state", STATES, ids=lambda state: state.name)
async def test_no_serious_or_critical_axe_violations(
    state: State, server: Server, browser: Browser
) -> None:
    await assert_accessible(state, server, browser)


async def assert_accessible(state: State, server: Server, browser: Browser) -> None:
    """Bring bo's column of the demo page into ``state`` and scan it with axe: no page
    error, no serious or critical violation (the others are printed)."""
    axe = node_modules() / "axe-core" / "axe.min.js"
    await state.feed(server)
    context = await browser.new_context(**state.device)
    try:
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(server.url)
        bo = page.get_by_test_id("user-bo")
        await expect(bo.locator('.notifier[data-state="ready"]')).to_have_count(1)
        for step in state.steps:
            await step(server, bo)
        await page.add_script_tag(path=axe)
        violations: list[dict[str, Any]] = await page.evaluate(SCAN)
    finally:
        await context.close()
    assert not errors, f"errors in the page: {errors}"
    failing = [v for v in violations if v["impact"] in FAILING_IMPACTS]
    assert not failing, f"axe found (any impact):\n{report(violations)}"
    if violations:
        print(f"axe, below serious, in {state.name}:\n{report(violations)}")


SCAN = """async () => {
    const { violations } = await axe.run(document, { resultTypes: ["violations"] });
    return violations.map((v) => ({
        id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.map((n) => ({ target: n.target.join(" "), summary: n.failureSummary })),
    }));
}"""
"""Every violation; axe's "needs review" results (``incomplete``: contrast of glyphs it
cannot judge, of text over overlapping boxes) are left to people."""


def report(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']}")
        for node in v["nodes"]:
            summary = " ".join(node["summary"].split())
            lines.append(f"    {node['target']}: {summary}")
    return "\n".join(lines)
