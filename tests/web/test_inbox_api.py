"""The inbox over HTTP on every backend: status and category filters, counts by category,
scoped marks, done, snooze, delete, action buttons, and the 4xx answers naming the field."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from notifier.categories import Categories, Category
from notifier.storage.base import Storage
from notifier.web.app import create_app
from tests.web.conftest import Api, close_services, make_services, server_settings

CATEGORIES = Categories(
    [Category("social", verbs=("like", "follow")), Category("billing", critical=True)]
)


@pytest.fixture
async def api(storage: Storage) -> AsyncIterator[Api]:
    services = make_services(storage, server_settings(), categories=CATEGORIES)
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield Api(http, services)
    await close_services(services)


async def post(api: Api, **activity: Any) -> dict[str, Any]:
    body = {"actor": "ana", "verb": "like", "object": "photo:1", "to": ["notification:bo"]}
    body.update(activity)
    response = await api.http.post("/v1/activities", json=body, headers=api.server())
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


async def get(api: Api, path: str, **params: Any) -> dict[str, Any]:
    response = await api.http.get(path, params=params, headers=api.user("bo"))
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def send(api: Api, method: str, path: str, body: Any = None) -> httpx.Response:
    return await api.http.request(method, path, json=body, headers=api.user("bo"))


FEED = "/v1/me/feeds/notification"


async def test_filters_counts_by_category_and_scoped_marks(api: Api) -> None:
    liked = await post(api, object="photo:1")
    followed = await post(api, verb="follow", object="user:bo")
    invoice = await post(api, verb="share", object="invoice:7", category="billing")
    plain = await post(api, verb="comment", object="post:3")
    assert (liked["category"], invoice["category"], plain.get("category")) == (
        "social",
        "billing",
        None,
    )
    page = await get(api, FEED)
    assert [g["category"] for g in page["groups"]] == [None, "billing", "social", "social"]
    assert [g["is_done"] for g in page["groups"]] == [False] * 4
    social = await get(api, FEED, category="social")
    assert [g["id"] for g in social["groups"]] == [followed["id"], liked["id"]]

    counts = await get(api, f"{FEED}/counts", by="category")
    assert counts == {
        "unseen": 4,
        "unread": 4,
        "categories": {"social": {"unseen": 2, "unread": 2}, "billing": {"unseen": 1, "unread": 1}},
        "uncategorized": {"unseen": 1, "unread": 1},
    }
    assert await get(api, f"{FEED}/counts") == {"unseen": 4, "unread": 4}

    # Mark all of one category read, then archive all read: only that category goes.
    marked = await send(
        api, "POST", f"{FEED}/mark", {"read": True, "all": True, "category": "social"}
    )
    assert marked.json() == {"unseen": 4, "unread": 2}
    archived = await send(
        api, "POST", f"{FEED}/mark", {"archived": True, "all": True, "status": "read"}
    )
    assert archived.json() == {"unseen": 2, "unread": 2}
    inbox = await get(api, FEED)
    assert [g["id"] for g in inbox["groups"]] == [plain["id"], invoice["id"]]
    archive = await get(api, FEED, status="archived")
    assert [g["id"] for g in archive["groups"]] == [followed["id"], liked["id"]]
    assert all(g["is_archived"] for g in archive["groups"])
    unread = await get(api, FEED, status="unread", category="billing")
    assert [g["id"] for g in unread["groups"]] == [invoice["id"]]
    everything = await get(api, FEED, status="all")
    assert len(everything["groups"]) == 4
    # Unarchive one.
    back = await send(api, "POST", f"{FEED}/mark", {"archived": False, "group_ids": [liked["id"]]})
    assert back.json() == {"unseen": 3, "unread": 2}


async def test_done_snooze_and_delete(api: Api) -> None:
    first = await post(api, object="photo:1")
    second = await post(api, object="photo:2", extra={"actions": [
        {"label": "View", "url": "https://example.com/p/2"},
        {"label": "Thank", "event": "thank"},
    ]})  # fmt: skip
    done = await send(api, "POST", f"{FEED}/mark", {"done": True, "group_ids": [second["id"]]})
    assert done.json() == {"unseen": 2, "unread": 2}
    groups = (await get(api, FEED))["groups"]
    assert [(g["id"], g["is_done"]) for g in groups] == [(second["id"], True), (first["id"], False)]
    assert groups[0]["activities"][0]["extra"]["actions"][1] == {"label": "Thank", "event": "thank"}

    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    snoozed = await send(
        api, "POST", f"{FEED}/snooze", {"group_ids": [first["id"]], "until": until}
    )
    assert snoozed.status_code == 200, snoozed.text
    assert snoozed.json() == {"unseen": 1, "unread": 1}
    assert [g["id"] for g in (await get(api, FEED))["groups"]] == [second["id"]]
    [hidden] = (await get(api, FEED, status="snoozed"))["groups"]
    assert hidden["id"] == first["id"] and hidden["snoozed_until"] is not None
    woke = await send(api, "POST", f"{FEED}/snooze", {"group_ids": [first["id"]], "until": None})
    assert woke.json() == {"unseen": 2, "unread": 2}

    deleted = await send(api, "DELETE", f"{FEED}/groups/{second['id']}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"removed": [second["id"]], "counts": {"unseen": 1, "unread": 1}}
    again = await send(api, "DELETE", f"{FEED}/groups/{second['id']}")
    assert again.status_code == 404 and again.json()["error"]["field"] == "group_id"
    # The server-API twins act on any user's feed.
    twin = await api.http.request(
        "DELETE", f"/v1/feeds/notification/bo/groups/{first['id']}", headers=api.server()
    )
    assert twin.json()["counts"] == {"unseen": 0, "unread": 0}


@pytest.mark.parametrize(
    ("method", "path", "body", "params", "field"),
    [
        ("GET", FEED, None, {"status": "bogus"}, "status"),
        ("GET", FEED, None, {"category": "nope"}, "category"),
        ("GET", FEED, None, {"category": "Bad Name"}, "category"),
        ("GET", "/v1/me/feeds/timeline", None, {"status": "unread"}, "status"),
        ("GET", f"{FEED}/counts", None, {"by": "verb"}, "by"),
        ("POST", f"{FEED}/mark", {"read": True, "group_ids": ["0" * 26], "category": "social"},
         None, "category"),
        ("POST", f"{FEED}/mark", {"read": True, "all": True, "status": "bogus"}, None, "status"),
        ("POST", f"{FEED}/mark", {"all": True}, None, "seen"),
        ("POST", f"{FEED}/snooze", {"group_ids": ["0" * 26], "until": "2020-01-01T00:00:00Z"},
         None, "until"),
        ("POST", f"{FEED}/snooze", {"group_ids": ["0" * 26], "until": "2999-01-01T00:00:00Z"},
         None, "until"),
        ("POST", f"{FEED}/snooze", {"group_ids": [], "until": None}, None, "group_ids"),
        ("DELETE", f"{FEED}/groups/xyz", None, None, "group_id"),
    ],
)  # fmt: skip
async def test_bad_inbox_requests_get_a_4xx_naming_the_field(
    api: Api, method: str, path: str, body: Any, params: Any, field: str
) -> None:
    response = await api.http.request(
        method, path, json=body, params=params, headers=api.user("bo")
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["field"] == field, response.text


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"actions": "x"}, "extra.actions"),
        ({"actions": [{"label": "a", "url": "/a"}] * 3}, "extra.actions"),
        ({"actions": [{"label": "Go", "url": "javascript:alert(1)"}]}, "extra.actions[0].url"),
        ({"actions": [{"label": "Go", "url": "//evil.example"}]}, "extra.actions[0].url"),
        ({"actions": [{"label": "", "url": "/a"}]}, "extra.actions[0].label"),
        ({"actions": [{"label": "Go", "url": "/a", "event": "go"}]}, "extra.actions[0]"),
        ({"actions": [{"label": "Go", "event": "no spaces"}]}, "extra.actions[0].event"),
    ],
)
async def test_bad_actions_are_refused_naming_the_field(
    api: Api, extra: dict[str, Any], field: str
) -> None:
    body = {"actor": "ana", "verb": "like", "object": "photo:1", "extra": extra}
    response = await api.http.post("/v1/activities", json=body, headers=api.server())
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


async def test_expires_at_must_be_in_the_future(api: Api) -> None:
    body = {
        "actor": "ana",
        "verb": "like",
        "object": "photo:1",
        "expires_at": "2020-01-01T00:00:00Z",
    }
    response = await api.http.post("/v1/activities", json=body, headers=api.server())
    assert response.status_code == 422 and response.json()["error"]["field"] == "expires_at"
