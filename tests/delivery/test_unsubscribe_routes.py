"""``/v1/unsubscribe`` through the real app (memory backend): the page changes nothing, the
one-click POST of a mail client turns email digests off and keeps everything else, and a bad
link is a 400 page, never a change."""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import msgspec
import pytest

from notifier.delivery.settings import DeliverySettings
from notifier.delivery.unsubscribe import unsubscribe_token
from notifier.preferences import Muted, Preferences
from notifier.storage.memory import MemoryStorage
from notifier.web.app import create_app
from notifier.web.wiring import build_services
from tests.web.conftest import SECRET, Api, close_services, config_for, server_settings

DELIVERY = DeliverySettings(public_url="http://test", secret=SECRET)
ONE_CLICK = {"content": b"List-Unsubscribe=One-Click",
             "headers": {"Content-Type": "application/x-www-form-urlencoded"}}  # fmt: skip
SEEDED = Preferences(
    muted=Muted(verbs=frozenset({"like"}), actors=frozenset({"cy"})),
    channels={"webhook": frozenset({"social"}), "email": frozenset({"billing"})},
    email="bo@example.com",
)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    storage = MemoryStorage()
    config = dataclasses.replace(config_for(storage), delivery=DELIVERY)
    services = build_services(config, server_settings(), storage=storage)
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield Api(http, services)
    await close_services(services)
    await storage.close()


def url(token: str | None = None, **params: str) -> str:
    query = ({"token": token} if token is not None else {}) | params
    return f"/v1/unsubscribe?{urlencode(query)}" if query else "/v1/unsubscribe"


async def stored(api: Api, user: str = "bo") -> Preferences | None:
    return (await api.app.storage.preferences([user])).get(user)


async def test_the_page_asks_and_changes_nothing(api: Api) -> None:
    await api.app.storage.put_preferences("bo", SEEDED)
    token = unsubscribe_token("bo", DELIVERY)
    for _ in range(2):  # a mail scanner, then the person
        response = await api.http.get(url(token))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "form-action 'self'" in response.headers["content-security-policy"]
    page = response.text
    assert "Unsubscribe from email digests?" in page
    form = re.search(r'<form method="post" action="([^"]+)">', page)
    assert form is not None
    assert html.unescape(form.group(1)) == url(token)
    assert 'name="List-Unsubscribe" value="One-Click"' in page
    assert await stored(api) == SEEDED
    # The page's own button: a POST of its form to its action.
    clicked = await api.http.post(html.unescape(form.group(1)), **ONE_CLICK)
    assert clicked.status_code == 200
    assert (await stored(api) or Preferences()).channels["email"] == {"*"}


async def test_one_click_turns_email_off_and_keeps_the_rest(api: Api) -> None:
    await api.app.storage.put_preferences("bo", SEEDED)
    token = unsubscribe_token("bo", DELIVERY)
    response = await api.http.post(url(token), **ONE_CLICK)  # no Origin: a mail client
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "You will get no more email digests" in response.text
    assert await stored(api) == msgspec.structs.replace(
        SEEDED, channels={"webhook": frozenset({"social"}), "email": frozenset({"*"})}
    )
    # What the app and the widget read says so too; the widget's mute-only PUT keeps it.
    seen = await api.http.get("/v1/users/bo/preferences", headers=api.server())
    assert seen.json()["channels"] == {"email": ["*"], "webhook": ["social"]}
    assert seen.json()["email"] == "bo@example.com"
    muted = {"muted": {"verbs": ["comment"]}}
    put = await api.http.put("/v1/me/preferences", json=muted, headers=api.user("bo"))
    assert put.status_code == 200, put.text
    assert put.json()["channels"]["email"] == ["*"]


async def test_one_click_is_idempotent_and_works_for_users_with_nothing_stored(
    api: Api,
) -> None:
    token = unsubscribe_token("dee", DELIVERY)
    assert await stored(api, "dee") is None
    for origin in (None, "https://mail.example", "null"):  # webmail pages post from anywhere
        headers: dict[str, str] = {**ONE_CLICK["headers"]}
        if origin is not None:
            headers["Origin"] = origin
        response = await api.http.post(url(token), content=ONE_CLICK["content"], headers=headers)
        assert response.status_code == 200, (origin, response.text)
        assert "You will get no more email digests" in response.text
    assert await stored(api, "dee") == Preferences(channels={"email": frozenset({"*"})})


async def test_a_body_is_not_needed(api: Api) -> None:
    response = await api.http.post(url(unsubscribe_token("bo", DELIVERY)))
    assert response.status_code == 200
    assert await stored(api) == Preferences(channels={"email": frozenset({"*"})})


def _bad_tokens(api: Api) -> dict[str, tuple[str | None, str]]:
    """Name → (token, what the page says)."""
    now = datetime.now(UTC)
    expired = unsubscribe_token("bo", DELIVERY, now - DELIVERY.unsubscribe_ttl - timedelta(1))
    other = unsubscribe_token("bo", dataclasses.replace(DELIVERY, secret="o" * 40))
    user_token, _ = api.services.tokens.issue("bo", 600)
    valid = unsubscribe_token("bo", DELIVERY)
    return {
        "missing": (None, "no unsubscribe token"),
        "empty": ("", "no unsubscribe token"),
        "garbage": ("not-a-token", "not valid"),
        "huge": ("x" * 20_000, "not valid"),
        "unicode": ("é.ü.ß", "not valid"),
        "truncated": (valid[:-3], "not valid"),
        "forged": (other, "not valid"),
        "user token": (user_token, "not valid"),
        "expired": (expired, "has expired"),
    }


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_bad_link_is_a_400_page_and_changes_nothing(api: Api, method: str) -> None:
    await api.app.storage.put_preferences("bo", SEEDED)
    for name, (token, says) in _bad_tokens(api).items():
        kwargs: dict[str, Any] = ONE_CLICK if method == "POST" else {}
        response = await api.http.request(method, url(token), **kwargs)
        assert response.status_code == 400, (name, response.status_code, response.text)
        assert response.headers["content-type"].startswith("text/html"), name
        assert says in response.text, name
        assert "<form" not in response.text, name
    assert await stored(api) == SEEDED


async def test_other_methods_are_405_listing_both(api: Api) -> None:
    response = await api.http.put(url(unsubscribe_token("bo", DELIVERY)))
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) >= {"GET", "POST"}


async def test_a_storage_outage_is_a_503_page_and_the_click_can_be_repeated(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreachable(users: Any) -> Any:
        raise ConnectionError("storage down")

    token = unsubscribe_token("bo", DELIVERY)
    with monkeypatch.context() as patch:
        patch.setattr(api.app.storage, "preferences", unreachable)
        response = await api.http.post(url(token), **ONE_CLICK)
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert "try again" in response.text
    assert (await api.http.post(url(token), **ONE_CLICK)).status_code == 200
    assert await stored(api) == Preferences(channels={"email": frozenset({"*"})})


async def test_the_link_in_a_rendered_digest_unsubscribes(api: Api) -> None:
    from notifier.delivery.email import DigestData, DigestItem, render_digest

    now = datetime.now(UTC)
    item = DigestItem(feed="notification", group_id="g", position="0" * 26, category=None,
                      verb="like", summary="ana liked your photo", actors=["ana"],
                      activity_count=1, updated_at=now)  # fmt: skip
    data = DigestData(delivery_id="1" * 42, user="bo", address="bo@example.com",
                      window_start=now, window_end=now, items=[item])  # fmt: skip
    message = render_digest(data, DELIVERY, now=now)
    link = message["List-Unsubscribe"].strip("<>")
    assert link.startswith("http://test/v1/unsubscribe?token=")
    response = await api.http.post(link, **ONE_CLICK)
    assert response.status_code == 200
    assert await stored(api) == Preferences(channels={"email": frozenset({"*"})})
