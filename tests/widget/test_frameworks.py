"""The React and Vue examples of docs/widget.md, run as printed with the real React, ReactDOM
and Vue from npm (tests/widget/npm.py), against the demo server: the bell counts what the
server API adds, live, and the listeners each example wires the framework's way fire.

The code comes out of the doc's fenced blocks marked ``react-example`` / ``vue-example``, so
the doc cannot drift from what runs. The page is served as the reader's app would serve it,
from an origin of its own (another port, allowed by notifier), with its ``/notifier-token``
route answering bo's token; only the notifier origin the doc writes
(``https://notifier.example``) is replaced by the test server's."""

from __future__ import annotations

import contextlib
import re
import socket
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tests.services import bound_socket
from tests.widget import npm
from tests.widget.conftest import Server, ServerFactory, origin_of, serve_site

DOC = Path(__file__).resolve().parents[2] / "docs" / "widget.md"
DOC_ORIGIN = "https://notifier.example"


def examples() -> dict[str, dict[str, str]]:
    """The doc's marked blocks: framework -> language -> code."""
    found: dict[str, dict[str, str]] = defaultdict(dict)
    for language, framework, code in re.findall(
        r"^```(\w+) (\w+)-example\n(.*?)^```$", DOC.read_text(), re.S | re.M
    ):
        assert language not in found[framework], f"two {language} {framework} examples"
        found[framework][language] = code
    return found


def test_the_doc_has_both_examples() -> None:
    assert {k: sorted(v) for k, v in examples().items()} == {
        "react": ["html", "js"],
        "vue": ["html"],
    }


@contextlib.asynccontextmanager
async def readers_app(server: Server, sock: socket.socket, framework: str) -> AsyncIterator[str]:
    """The reader's app on its own origin: the doc's page (``html``, and ``js`` as
    /src/main.js), its backend's token route, and node_modules at /npm/."""
    blocks = {lang: code.replace(DOC_ORIGIN, server.url)
              for lang, code in examples()[framework].items()}  # fmt: skip
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>My app</title>'
        f'<link rel="icon" href="data:,">{npm.import_map()}</head>'
        f"<body>{blocks['html']}</body></html>"
    )

    async def page(request: Request) -> Response:
        return HTMLResponse(html)

    async def main_js(request: Request) -> Response:
        return Response(blocks["js"], media_type="text/javascript")

    async def notifier_token(request: Request) -> Response:
        return JSONResponse({"token": server.token("bo")})  # after checking the session

    routes = [
        Route("/", page),
        Route("/src/main.js", main_js),
        Route("/notifier-token", notifier_token, methods=["POST"]),
        npm.route,
    ]
    async with serve_site(Starlette(routes=routes), sock) as url:
        yield url


@pytest.mark.parametrize("framework", ["react", "vue"])
async def test_the_docs_example_counts_live_and_its_listeners_fire(
    framework: str, server_factory: ServerFactory, browser: Browser
) -> None:
    npm.node_modules()
    sock = bound_socket()
    server: Server = await server_factory(origins=(origin_of(sock),))
    problems: list[str] = []  # printed, so that a failure shows them too
    context = await browser.new_context(viewport={"width": 1100, "height": 760})
    try:
        async with readers_app(server, sock, framework) as origin:
            page = await context.new_page()
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on(
                "console",
                lambda message: problems.append(message.text) if message.type == "error" else None,
            )
            await page.goto(origin)
            bell = page.locator("notifier-bell")
            await expect(bell.locator('.notifier[data-state="ready"]')).to_have_count(1)
            await expect(page.get_by_text("Showing home")).to_be_visible()
            assert await bell.get_attribute("options") is None  # a property, not an attribute

            await server.notify("bo", "ana", extra={"url": "#/photos/1"})
            await expect(bell.get_by_test_id("notifier-badge")).to_have_text("1")
            await expect(bell.get_by_test_id("notifier-bell")).to_have_attribute(
                "aria-label", "Notifications, 1 unseen"
            )
            await expect(page.get_by_text("1 new since you came")).to_be_visible()  # new-items

            await bell.get_by_test_id("notifier-bell").click()
            await bell.get_by_test_id("notifier-item-link").click()  # item-click
            await expect(page.get_by_text(f"Showing {origin}/#/photos/1")).to_be_visible()
            await expect(page).to_have_url(f"{origin}/")  # the app routed, not the browser
            await expect(bell.get_by_test_id("notifier-item")).to_have_attribute(
                "data-read", "true"
            )
    finally:
        await context.close()
        print("errors in the page:", *problems, sep="\n")
    assert not problems
