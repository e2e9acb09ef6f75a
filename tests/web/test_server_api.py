"""The server API's activity, follow and feed routes, on every backend."""

from __future__ import annotations

import asyncio

from tests.web.conftest import Api
from tests.web.test_auth_and_errors import assert_error

LIKE = {
    "actor": "ana",
    "verb": "like",
    "object": "like:1",
    "target": "photo:1",
    "time": "2026-11-29T10:00:00Z",
    "foreign_id": "like:1",
    "extra": {"url": "/photos/1"},
    "to": ["notification:bo"],
}


async def wait_for(condition: object, within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await condition():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_add_activity_returns_it_with_an_id_and_writes_own_and_to_feeds(api: Api) -> None:
    response = await api.http.post("/v1/activities", json=LIKE, headers=api.server())
    assert response.status_code == 201, response.text
    body = response.json()
    assert len(body["id"]) == 26 and body["actor"] == "ana" and body["extra"] == LIKE["extra"]
    assert body["time"] == "2026-11-29T10:00:00Z"
    own = await api.http.get("/v1/feeds/user/ana", headers=api.server())
    assert [a["id"] for a in own.json()["activities"]] == [body["id"]]
    inbox = (await api.http.get("/v1/feeds/notification/bo", headers=api.server())).json()
    assert inbox["counts"] == {"unseen": 1, "unread": 1}
    assert inbox["groups"][0]["activities"][0]["id"] == body["id"]


async def test_resending_the_same_foreign_id_and_time_is_idempotent(api: Api) -> None:
    first = await api.http.post("/v1/activities", json=LIKE, headers=api.server())
    again = await api.http.post("/v1/activities", json=LIKE, headers=api.server())
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    counts = await api.http.get("/v1/feeds/notification/bo/counts", headers=api.server())
    assert counts.json() == {"unseen": 1, "unread": 1}
    changed = {**LIKE, "object": "like:other"}
    response = await api.http.post("/v1/activities", json=changed, headers=api.server())
    assert_error(response, 409, "conflict", "foreign_id")


async def test_activity_validation_names_the_field(api: Api) -> None:
    cases = [
        ({**LIKE, "verb": "explode"}, "verb"),
        ({**LIKE, "actor": 7}, "actor"),
        ({**LIKE, "to": ["nope:bo"]}, "to"),
        ({**LIKE, "time": "yesterday"}, "time"),
        ({**LIKE, "colour": "red"}, "colour"),
        ({k: v for k, v in LIKE.items() if k != "object"}, "object"),
    ]
    for body, field in cases:
        response = await api.http.post("/v1/activities", json=body, headers=api.server())
        assert_error(response, 422, "invalid", field)


async def test_batch_adds_all_and_names_the_bad_item(api: Api) -> None:
    items = [{"actor": "ana", "verb": "post", "object": f"post:{n}"} for n in range(3)]
    response = await api.http.post(
        "/v1/activities/batch", json={"activities": items}, headers=api.server()
    )
    assert response.status_code == 201
    assert len({a["id"] for a in response.json()["activities"]}) == 3
    bad = [*items, {"actor": "ana", "verb": "nope", "object": "x"}]
    response = await api.http.post(
        "/v1/activities/batch", json={"activities": bad}, headers=api.server()
    )
    assert_error(response, 422, "invalid", "activities[3].verb")
    response = await api.http.post(
        "/v1/activities/batch", json={"activities": []}, headers=api.server()
    )
    assert_error(response, 422, "invalid", "activities")


async def test_a_batch_with_two_different_activities_under_one_id_stores_nothing(
    api: Api,
) -> None:
    other = {**LIKE, "object": "like:other"}  # same foreign_id and time, other content
    batch = {"activities": [{**LIKE, "foreign_id": "x", "object": "x"}, LIKE, other]}
    response = await api.http.post("/v1/activities/batch", json=batch, headers=api.server())
    assert_error(response, 409, "conflict", "activities[2].foreign_id")
    assert "activities[1] and activities[2]" in response.json()["error"]["message"]
    own = await api.http.get("/v1/feeds/user/ana", headers=api.server())
    assert own.json()["activities"] == []
    # Exact duplicates are one activity (a re-send within the batch), stored once.
    response = await api.http.post(
        "/v1/activities/batch", json={"activities": [LIKE, LIKE]}, headers=api.server()
    )
    assert response.status_code == 201, response.text
    stored = response.json()["activities"]
    assert stored[0] == stored[1]
    own = await api.http.get("/v1/feeds/user/ana", headers=api.server())
    assert [a["id"] for a in own.json()["activities"]] == [stored[0]["id"]]


async def test_deeply_nested_extra_is_refused_naming_the_field(api: Api) -> None:
    depth = 2000
    objects = '{"a":' * depth + "1" + "}" * depth
    arrays = "[" * 100_000 + "]" * 100_000
    single = '{"actor":"ana","verb":"like","object":"o","extra":%s}'
    for body, url, field in [
        (single % objects, "/v1/activities", "extra"),
        (single % ('{"a":' + arrays + "}"), "/v1/activities", "extra"),
        ('{"activities":[{"actor":"ana","verb":"like","object":"o"},' + (single % objects)[:-1]
         + "}]}", "/v1/activities/batch", "activities[1].extra"),
        ('{"group_ids":' + arrays + "}", "/v1/feeds/notification/bo/mark", "group_ids"),
    ]:  # fmt: skip
        response = await api.http.post(
            url, content=body, headers={**api.server(), "Content-Type": "application/json"}
        )
        assert_error(response, 422, "invalid", field)
        assert "nested deeper" in response.json()["error"]["message"]
    # 32 levels (the default limit) are fine.
    ok = '{"a":' * 31 + "1" + "}" * 31
    response = await api.http.post(
        "/v1/activities", content=single % ok,
        headers={**api.server(), "Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 201, response.text


async def test_remove_by_id_and_by_foreign_id(api: Api) -> None:
    made = (await api.http.post("/v1/activities", json=LIKE, headers=api.server())).json()
    other = {**LIKE, "foreign_id": "like:2", "object": "like:2"}
    (await api.http.post("/v1/activities", json=other, headers=api.server())).json()
    response = await api.http.delete(f"/v1/activities/{made['id']}", headers=api.server())
    assert response.json() == {"removed": [made["id"]]}
    response = await api.http.delete("/v1/activities?foreign_id=like:2", headers=api.server())
    assert len(response.json()["removed"]) == 1

    async def emptied() -> bool:
        inbox = await api.http.get("/v1/feeds/notification/bo", headers=api.server())
        return inbox.json()["groups"] == []

    await wait_for(emptied)
    assert_error(
        await api.http.delete(f"/v1/activities/{made['id']}", headers=api.server()),
        404,
        "not_found",
        "activity_id",
    )
    assert_error(
        await api.http.delete("/v1/activities?foreign_id=nope", headers=api.server()),
        404,
        "not_found",
        "foreign_id",
    )


async def test_follow_graph_routes(api: Api) -> None:
    for user in ("bo", "cy", "dee"):
        response = await api.http.post(
            "/v1/follows", json={"user": user, "target": "ana"}, headers=api.server()
        )
        assert response.json() == {"followed": True}
    again = await api.http.post(
        "/v1/follows", json={"user": "bo", "target": "ana"}, headers=api.server()
    )
    assert again.json() == {"followed": False}
    page = await api.http.get("/v1/users/ana/followers?limit=2", headers=api.server())
    assert page.json() == {"users": ["bo", "cy"], "next": "cy"}
    rest = await api.http.get("/v1/users/ana/followers?limit=2&after=cy", headers=api.server())
    assert rest.json() == {"users": ["dee"], "next": None}
    following = await api.http.get("/v1/users/bo/following", headers=api.server())
    assert following.json()["users"] == ["ana"]
    counts = await api.http.get("/v1/users/ana/follow_counts", headers=api.server())
    assert counts.json() == {"followers": 3, "following": 0}
    gone = await api.http.delete("/v1/follows/bo/ana", headers=api.server())
    assert gone.json() == {"unfollowed": True}
    gone = await api.http.delete("/v1/follows/bo/ana", headers=api.server())
    assert gone.json() == {"unfollowed": False}
    response = await api.http.post(
        "/v1/follows", json={"user": "bo", "target": "bo"}, headers=api.server()
    )
    assert_error(response, 422, "invalid", "target")


async def test_follow_with_backfill_then_fanout_on_the_memory_backend(api: Api) -> None:
    if type(api.app.storage).__name__ != "MemoryStorage":
        return  # Redis fanout runs in worker processes: covered by test_serve and tests/fanout
    post = {"actor": "ana", "verb": "post", "object": "post:1"}
    first = (await api.http.post("/v1/activities", json=post, headers=api.server())).json()
    await api.http.post(
        "/v1/follows", json={"user": "bo", "target": "ana", "backfill": 10}, headers=api.server()
    )
    second = (
        await api.http.post(
            "/v1/activities", json={**post, "object": "post:2"}, headers=api.server()
        )
    ).json()

    async def both() -> bool:
        page = await api.http.get("/v1/feeds/timeline/bo", headers=api.server())
        return [a["id"] for a in page.json()["activities"]] == [second["id"], first["id"]]

    await wait_for(both)


async def test_feed_pages_with_cursors_and_mark_on_behalf(api: Api) -> None:
    for n in range(5):
        body = {**LIKE, "foreign_id": f"f{n}", "target": f"photo:{n}", "object": f"like:{n}"}
        body["time"] = f"2026-11-29T10:0{n}:00Z"
        assert (await api.http.post("/v1/activities", json=body, headers=api.server())).is_success
    page = (await api.http.get("/v1/feeds/notification/bo?limit=2", headers=api.server())).json()
    assert len(page["groups"]) == 2 and page["next"] == page["groups"][1]["position"]
    rest = (
        await api.http.get(
            f"/v1/feeds/notification/bo?limit=10&id_lt={page['next']}", headers=api.server()
        )
    ).json()
    assert len(rest["groups"]) == 3 and rest["next"] is None
    url = "/v1/feeds/notification/bo/mark"
    up_to = page["groups"][1]["position"]
    response = await api.http.post(
        url, json={"read": True, "all": True, "up_to": up_to}, headers=api.server()
    )
    assert response.json() == {"unseen": 5, "unread": 1}
    response = await api.http.post(
        url, json={"read": True, "up_to": up_to, "group_ids": []}, headers=api.server()
    )
    assert_error(response, 422, "invalid", "up_to")
    response = await api.http.post(
        url, json={"seen": True, "group_ids": ["zz"]}, headers=api.server()
    )
    assert_error(response, 422, "invalid", "group_ids[0]")


async def test_reading_ones_feeds_or_connecting_marks_the_user_active(api: Api) -> None:
    import time

    presence = api.services.fanout.presence
    since = time.time() - 1
    assert await presence.active_since(["bo", "cy"], since) == [False, False]
    response = await api.http.get("/v1/me/feeds/notification", headers=api.user("bo"))
    assert response.status_code == 200
    await api.services.realtime.on_connect("cy")  # what an authenticated websocket calls
    assert await presence.active_since(["bo", "cy"], since) == [True, True]
