"""The server API of delivery: webhook endpoints (register, list, change, delete), their
deliveries and users' email digests (list, read, replay), and the 4xx of each mistake."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from notifier.delivery.model import Delivery, make_id
from notifier.delivery.signing import secret_key
from tests.web.conftest import Api

HOOK = {"url": "https://hooks.example.com/notifier", "categories": ["social"]}


async def test_an_endpoint_is_registered_listed_changed_and_deleted(api: Api) -> None:
    made = await api.http.post("/v1/webhooks", json=HOOK, headers=api.server())
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["id"].startswith("ep_") and body["url"] == HOOK["url"]
    assert body["categories"] == ["social"] and body["disabled"] is False
    assert len(secret_key(body["secret"])) == 24  # shown once, here
    listed = await api.http.get("/v1/webhooks", headers=api.server())
    assert [e["id"] for e in listed.json()["endpoints"]] == [body["id"]]
    assert listed.json()["endpoints"][0]["secret"] is None
    path = f"/v1/webhooks/{body['id']}"
    changed = await api.http.patch(
        path, json={"categories": None, "disabled": True}, headers=api.server()
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["categories"], changed.json()["disabled"]) == (None, True)
    assert changed.json()["url"] == HOOK["url"]  # left alone
    assert (await api.http.get(path, headers=api.server())).json()["disabled"] is True
    deleted = await api.http.delete(path, headers=api.server())
    assert deleted.json() == {"deleted": body["id"]}
    for gone in (
        await api.http.get(path, headers=api.server()),
        await api.http.delete(path, headers=api.server()),
        await api.http.patch(path, json={"disabled": False}, headers=api.server()),
    ):
        assert gone.status_code == 404
        assert gone.json()["error"]["field"] == "endpoint_id"


async def test_an_endpoint_may_bring_its_own_secret(api: Api) -> None:
    own = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    made = await api.http.post("/v1/webhooks", json={**HOOK, "secret": own}, headers=api.server())
    assert made.status_code == 201, made.text
    assert made.json()["secret"] == own


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://hooks.example.com/x"}, "url"),
        ({"url": "https://"}, "url"),
        ({"url": "https://user:pw@hooks.example.com/"}, "url"),
        ({"url": "http://127.0.0.1:8080/hook"}, "url"),
        ({"url": "http://10.1.2.3/hook"}, "url"),
        ({"url": "http://[::1]/hook"}, "url"),
        ({"url": "http://localhost/hook"}, "url"),
        ({"url": "https://h.example.com/" + "x" * 2000}, "url"),
        ({"url": 7}, "url"),
        ({**HOOK, "categories": ["Not A Name"]}, "categories"),
        ({**HOOK, "secret": "plain"}, "secret"),
        ({**HOOK, "secret": "whsec_c2hvcnQ="}, "secret"),
        ({**HOOK, "color": "red"}, "color"),
        ({}, "url"),
    ],
)
async def test_a_bad_endpoint_is_422_naming_the_field(
    api: Api, body: dict[str, object], field: str
) -> None:
    made = await api.http.post("/v1/webhooks", json=body, headers=api.server())
    assert made.status_code == 422, made.text
    assert made.json()["error"]["field"] == field
    assert (await api.http.get("/v1/webhooks", headers=api.server())).json()["endpoints"] == []


async def test_endpoints_are_for_the_server_api_only(api: Api) -> None:
    for response in (
        await api.http.post("/v1/webhooks", json=HOOK, headers=api.user("bo")),
        await api.http.get("/v1/webhooks", headers=api.user("bo")),
        await api.http.get("/v1/users/bo/deliveries", headers=api.user("bo")),
    ):
        assert response.status_code == 403
    assert (await api.http.get("/v1/webhooks")).status_code == 401


async def test_deliveries_are_listed_newest_first_read_and_replayed(api: Api) -> None:
    made = (await api.http.post("/v1/webhooks", json=HOOK, headers=api.server())).json()
    store = api.services.fanout.escalation.store
    now = datetime.now(UTC)
    decided = []
    for n in range(3):
        delivery_id = make_id(f"{n + 1:026x}", "webhook", made["id"], str(n))
        d = Delivery(
            id=delivery_id, channel="webhook", target=made["id"], scope=delivery_id,
            user="bo", payload=b'{"n": %d}' % n, created_at=now,
        )  # fmt: skip
        await store.claim(d)
        decided.append(d)
    base = f"/v1/webhooks/{made['id']}/deliveries"
    page = await api.http.get(base, params={"limit": 2}, headers=api.server())
    assert page.status_code == 200, page.text
    assert [d["id"] for d in page.json()["deliveries"]] == [decided[2].id, decided[1].id]
    assert page.json()["deliveries"][0]["payload"] == {"n": 2}
    rest = await api.http.get(base, params={"before": page.json()["next"]}, headers=api.server())
    assert [d["id"] for d in rest.json()["deliveries"]] == [decided[0].id]
    assert rest.json()["next"] is None
    dead = await api.http.get(base, params={"status": "dead"}, headers=api.server())
    assert dead.json()["deliveries"] == []
    one = await api.http.get(f"{base}/{decided[0].id}", headers=api.server())
    assert one.json()["status"] == "pending" and one.json()["attempts"] == 0
    replayed = await api.http.post(f"{base}/{decided[0].id}/replay", headers=api.server())
    assert replayed.status_code == 202, replayed.text
    assert replayed.json()["id"] == decided[0].id
    # Someone else's delivery id under this endpoint is unknown here.
    other = await api.http.get(f"/v1/webhooks/ep_other/deliveries/{decided[0].id}",
                               headers=api.server())  # fmt: skip
    assert other.status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/v1/webhooks/ep_x/deliveries/" + "0" * 42,
        "/v1/webhooks/ep_x/deliveries/not-an-id",
        "/v1/users/bo/deliveries/" + "f" * 42,
        "/v1/users/bo/deliveries/zz",
    ],
)
async def test_unknown_deliveries_are_404_to_read_and_to_replay(api: Api, path: str) -> None:
    assert (await api.http.get(path, headers=api.server())).status_code == 404
    replay = await api.http.post(f"{path}/replay", headers=api.server())
    assert replay.status_code == 404
    assert replay.json()["error"]["field"] == "delivery_id"


async def test_bad_delivery_queries_are_422(api: Api) -> None:
    for params in ({"limit": 0}, {"limit": 501}, {"status": "lost"}, {"before": "x"}):
        page = await api.http.get("/v1/users/bo/deliveries", params=params, headers=api.server())
        assert page.status_code == 422, (params, page.text)
