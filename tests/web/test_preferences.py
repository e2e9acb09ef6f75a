"""``/v1/me/preferences`` and ``/v1/users/{user}/preferences``, on every backend: what a user
may mute, the 422 naming the field for what they may not, and mutes applied to writes."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest

from notifier.categories import Categories, Category
from notifier.storage.base import Storage
from notifier.web.app import create_app
from notifier.web.wiring import build_services
from tests.web.conftest import Api, close_services, config_for, server_settings
from tests.web.test_auth_and_errors import assert_error

CATEGORIES = Categories(
    [Category("billing", critical=True, verbs=("invite",)), Category("social", verbs=("like",))]
)
DECLARED = [{"name": "billing", "critical": True}, {"name": "social", "critical": False}]
NOTHING = {"categories": [], "verbs": [], "actors": []}
NO_DELIVERY = {"channels": {}, "email": None}


@pytest.fixture
async def api(storage: Storage) -> AsyncIterator[Api]:
    """The app with two declared categories, billing critical."""
    config = dataclasses.replace(config_for(storage), categories=CATEGORIES)
    services = build_services(config, server_settings(), storage=storage)
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield Api(http, services)
    await close_services(services)


async def test_preferences_start_empty_and_list_the_declared_categories(api: Api) -> None:
    for response in (
        await api.http.get("/v1/me/preferences", headers=api.user("bo")),
        await api.http.get("/v1/users/bo/preferences", headers=api.server()),
    ):
        assert response.status_code == 200, response.text
        assert response.json() == {"muted": NOTHING, "categories": DECLARED, **NO_DELIVERY}


async def test_put_replaces_them_and_both_apis_see_the_same(api: Api) -> None:
    body = {"muted": {"categories": ["social"], "verbs": ["like", "comment", "like"],
                      "actors": ["cy", "ana"]}}  # fmt: skip
    put = await api.http.put("/v1/me/preferences", json=body, headers=api.user("bo"))
    assert put.status_code == 200, put.text
    muted = {"categories": ["social"], "verbs": ["comment", "like"], "actors": ["ana", "cy"]}
    assert put.json() == {"muted": muted, "categories": DECLARED, **NO_DELIVERY}
    seen = await api.http.get("/v1/users/bo/preferences", headers=api.server())
    assert seen.json() == put.json()
    # The server API replaces them too: a list left out mutes nothing of its kind.
    again = await api.http.put(
        "/v1/users/bo/preferences", json={"muted": {"actors": ["dee"]}}, headers=api.server()
    )
    assert again.json()["muted"] == {**NOTHING, "actors": ["dee"]}
    mine = await api.http.get("/v1/me/preferences", headers=api.user("bo"))
    assert mine.json() == again.json()
    cleared = await api.http.put("/v1/me/preferences", json={"muted": {}}, headers=api.user("bo"))
    assert cleared.json()["muted"] == NOTHING
    other = await api.http.get("/v1/me/preferences", headers=api.user("cy"))
    assert other.json()["muted"] == NOTHING


async def test_bad_preferences_are_422_naming_the_field(api: Api) -> None:
    too_many = [f"u{n}" for n in range(api.app.config.limits.max_muted + 1)]
    cases: list[tuple[object, str]] = [
        ({"muted": {"categories": ["billing"]}}, "muted.categories"),  # critical
        ({"muted": {"categories": ["nope"]}}, "muted.categories"),  # not declared
        ({"muted": {"categories": ["Not A Name"]}}, "muted.categories"),
        ({"muted": {"verbs": ["levitate"]}}, "muted.verbs"),
        ({"muted": {"actors": ["has space"]}}, "muted.actors"),
        ({"muted": {"actors": too_many}}, "muted.actors"),
        ({"muted": {"verbs": "like"}}, "muted.verbs"),
        ({"muted": {"verbs": [1]}}, "muted.verbs[0]"),
        ({"muted": {"sounds": []}}, "muted.sounds"),
        ({"muted": []}, "muted"),
        ({}, "muted"),
    ]
    for body, field in cases:
        for path, headers in (
            ("/v1/me/preferences", api.user("bo")),
            ("/v1/users/bo/preferences", api.server()),
        ):
            response = await api.http.put(path, json=body, headers=headers)
            assert response.status_code == 422, (body, response.text)
            found = response.json()["error"]["field"]
            assert found == field or (field == "muted.sounds" and found == "muted"), (body, found)
    # Nothing was stored by any of them.
    stored = await api.http.get("/v1/users/bo/preferences", headers=api.server())
    assert stored.json()["muted"] == NOTHING
    bad_user = await api.http.get("/v1/users/no%20space/preferences", headers=api.server())
    assert_error(bad_user, 422, "invalid", "user")


async def test_each_api_takes_only_its_own_credentials(api: Api) -> None:
    body = {"muted": {"verbs": ["like"]}}
    assert_error(await api.http.get("/v1/me/preferences"), 401, "unauthorized")
    assert_error(
        await api.http.put("/v1/me/preferences", json=body, headers=api.server()),
        401,
        "unauthorized",
    )
    assert_error(
        await api.http.put("/v1/users/bo/preferences", json=body, headers=api.user("bo")),
        403,
        "forbidden",
    )


async def test_a_muted_activity_never_reaches_the_feed_or_counts(api: Api) -> None:
    mute = {"muted": {"actors": ["ana"]}}
    put = await api.http.put("/v1/me/preferences", json=mute, headers=api.user("bo"))
    assert put.status_code == 200, put.text
    crit = {"muted": {"categories": ["billing"]}}
    refused = await api.http.put("/v1/me/preferences", json=crit, headers=api.user("cy"))
    assert_error(refused, 422, "invalid", "muted.categories")
    for verb in ("like", "invite"):  # social, then billing (critical: delivered regardless)
        activity = {"actor": "ana", "verb": verb, "object": f"{verb}:1",
                    "to": ["notification:bo", "notification:cy"]}  # fmt: skip
        response = await api.http.post("/v1/activities", json=activity, headers=api.server())
        assert response.status_code == 201, response.text
    bo = (await api.http.get("/v1/me/feeds/notification", headers=api.user("bo"))).json()
    cy = (await api.http.get("/v1/me/feeds/notification", headers=api.user("cy"))).json()
    assert [g["verb"] for g in bo["groups"]] == ["invite"]
    assert bo["counts"] == {"unseen": 1, "unread": 1}
    assert [g["verb"] for g in cy["groups"]] == ["invite", "like"]
    assert [g["category"] for g in cy["groups"]] == ["billing", "social"]
    by_category = await api.http.get(
        "/v1/me/feeds/notification/counts?by=category", headers=api.user("bo")
    )
    assert by_category.json()["categories"]["social"] == {"unseen": 0, "unread": 0}


async def test_channels_and_email_are_kept_when_left_out_and_only_the_server_sets_email(
    api: Api,
) -> None:
    server = {"muted": {}, "channels": {"email": ["social"]}, "email": "bo@example.com"}
    put = await api.http.put("/v1/users/bo/preferences", json=server, headers=api.server())
    assert put.status_code == 200, put.text
    assert put.json()["channels"] == {"email": ["social"]}
    # The widget knows only mutes: its PUT keeps the channels and the address.
    mutes = {"muted": {"verbs": ["like"]}}
    put = await api.http.put("/v1/me/preferences", json=mutes, headers=api.user("bo"))
    assert put.status_code == 200, put.text
    assert put.json()["muted"]["verbs"] == ["like"]
    assert put.json()["channels"] == {"email": ["social"]}
    assert put.json()["email"] == "bo@example.com"
    # A browser may turn channels off, never change the address.
    off = {"muted": {}, "channels": {"email": ["*"], "webhook": []}}
    put = await api.http.put("/v1/me/preferences", json=off, headers=api.user("bo"))
    assert put.json()["channels"] == {"email": ["*"]}
    refused = await api.http.put(
        "/v1/me/preferences", json={"muted": {}, "email": "x@evil.example"}, headers=api.user("bo")
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "email"
    seen = await api.http.get("/v1/users/bo/preferences", headers=api.server())
    assert seen.json()["email"] == "bo@example.com"
    forget = {"muted": {}, "email": None}
    put = await api.http.put("/v1/users/bo/preferences", json=forget, headers=api.server())
    assert put.json()["email"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"muted": {}, "channels": {"sms": ["social"]}}, "channels"),
        ({"muted": {}, "channels": {"email": ["nope"]}}, "channels.email"),
        ({"muted": {}, "channels": {"email": "social"}}, "channels"),
        ({"muted": {}, "email": "not-an-address"}, "email"),
        ({"muted": {}, "email": "a@b.c" + "x" * 260}, "email"),
    ],
)
async def test_bad_channels_or_addresses_are_refused_naming_the_field(
    api: Api, body: dict[str, object], field: str
) -> None:
    put = await api.http.put("/v1/users/bo/preferences", json=body, headers=api.server())
    assert put.status_code == 422, put.text
    assert put.json()["error"]["field"].startswith(field)
