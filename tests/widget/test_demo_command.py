"""``notifier demo`` starts and serves its page (a real subprocess, as a new user runs it), and
the demo's routes never exist in the app ``notifier serve`` runs."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from notifier.storage.memory import MemoryStorage
from notifier.web.app import create_app
from tests.services import running_demo
from tests.web.conftest import ORIGIN, close_services, make_services, server_settings

NOTIFIER = Path(sys.executable).with_name("notifier")


@pytest.fixture
def demo_url() -> Iterator[str]:
    """Run ``notifier demo`` on a free port; the URL is the one it prints."""
    with running_demo() as (url, _):
        yield url


def test_notifier_demo_serves_the_demo_page_and_the_widget(demo_url: str) -> None:
    with httpx.Client(base_url=demo_url, timeout=10) as http:
        page = http.get("/")
        assert page.status_code == 200
        assert page.text.count("<notifier-bell") == 2
        assert 'src="/static/notifier.js"' in page.text
        widget = http.get("/static/notifier.js")
        assert widget.status_code == 200
        assert "javascript" in widget.headers["content-type"]
        token = http.post("/demo/token/bo").json()["token"]
        feed = http.get("/v1/me/feeds/notification", headers={"Authorization": f"Bearer {token}"})
        assert feed.status_code == 200
        assert feed.json()["counts"]["unseen"] > 0  # seeded
        assert http.post("/demo/token/mallory").status_code == 404


async def test_serve_has_no_demo_routes_but_serves_the_widget_cross_origin() -> None:
    services = make_services(MemoryStorage(), server_settings())
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/")).status_code == 404
        assert (await http.post("/demo/token/bo")).status_code == 404
        assert (await http.post("/demo/act", json={})).status_code == 404
        widget = await http.get("/static/notifier.js", headers={"Origin": ORIGIN})
        assert widget.status_code == 200
        assert widget.headers["access-control-allow-origin"] == ORIGIN
        # The files are public (any page may load them, and then hear why the API refuses
        # it); the API itself answers no other origin.
        evil = {"Origin": "https://evil.example"}
        foreign = await http.get("/static/notifier.js", headers=evil)
        assert foreign.headers["access-control-allow-origin"] == "*"
        api = await http.get("/v1/me/feeds/notification", headers=evil)
        assert "access-control-allow-origin" not in api.headers
        assert (await http.get("/static/nope.js")).status_code == 404
    await close_services(services)


def test_the_demo_port_must_be_free() -> None:
    """A second demo on a taken port says so and exits, rather than printing a dead URL."""
    with socket_bound() as port:
        result = subprocess.run(
            [str(NOTIFIER), "demo", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert "open http" not in result.stdout


@contextlib.contextmanager
def socket_bound() -> Iterator[int]:
    """A listening socket on a free port, for as long as the ``with`` lasts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])
