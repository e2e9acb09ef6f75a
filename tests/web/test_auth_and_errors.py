"""Authentication, authorisation and the error contract of the HTTP API."""

from __future__ import annotations

import time

import jwt
import pytest

from notifier.errors import ConfigError
from tests.web.conftest import (
    API_KEY,
    OLD_KEY,
    ORIGIN,
    SECRET,
    Api,
    close_services,
    server_settings,
)


def assert_error(response: object, status: int, code: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()["error"]  # type: ignore[attr-defined]
    assert body["code"] == code
    assert body["message"]
    if field is not None:
        assert body["field"] == field


async def test_health_and_readiness(api: Api) -> None:
    assert (await api.http.get("/healthz")).json() == {"status": "ok", "checks": {}}
    ready = await api.http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["storage"] == "ok"
    if type(api.app.storage).__name__ == "RedisStorage":
        assert ready.json()["checks"]["broker"] == "ok"


async def test_readiness_fails_when_storage_is_unreachable() -> None:
    import httpx

    from notifier.storage.redis import RedisStorage
    from notifier.web.app import create_app
    from tests.services import free_port
    from tests.web.conftest import make_services

    dead = RedisStorage.from_url(f"redis://127.0.0.1:{free_port()}/0", prefix="x")
    services = make_services(dead, server_settings())
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["checks"]["storage"].startswith("unavailable")
    await close_services(services)


async def test_missing_and_wrong_credentials_are_401(api: Api) -> None:
    response = await api.http.get("/v1/feeds/notification/bo")
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    bad = {"Authorization": "Bearer not-a-real-key-at-all"}
    assert_error(await api.http.get("/v1/feeds/notification/bo", headers=bad), 401, "unauthorized")
    basic = {"Authorization": "Basic abc"}
    assert_error(
        await api.http.get("/v1/feeds/notification/bo", headers=basic), 401, "unauthorized"
    )


async def test_rotated_keys_both_work(api: Api) -> None:
    for key in (API_KEY, OLD_KEY):
        headers = {"Authorization": f"Bearer {key}"}
        assert (await api.http.get("/v1/feeds/user/bo", headers=headers)).status_code == 200


async def test_user_token_cannot_use_the_server_api(api: Api) -> None:
    response = await api.http.get("/v1/feeds/notification/bo", headers=api.user("bo"))
    assert_error(response, 403, "forbidden")
    response = await api.http.post("/v1/tokens", json={"user": "bo"}, headers=api.user("bo"))
    assert_error(response, 403, "forbidden")


async def test_api_key_cannot_use_the_client_api(api: Api) -> None:
    response = await api.http.get("/v1/me/feeds/notification", headers=api.server())
    assert_error(response, 401, "unauthorized")


async def test_expired_and_forged_tokens_are_rejected(api: Api) -> None:
    now = int(time.time())
    expired = jwt.encode(
        {"sub": "bo", "exp": now - 5, "aud": "notifier"}, SECRET, algorithm="HS256"
    )
    forged = jwt.encode(
        {"sub": "bo", "exp": now + 600, "aud": "notifier"}, "x" * 40, algorithm="HS256"
    )
    unsigned = jwt.encode({"sub": "bo", "exp": now + 600, "aud": "notifier"}, None, "none")
    no_exp = jwt.encode({"sub": "bo", "aud": "notifier"}, SECRET, algorithm="HS256")
    for token, reason in [
        (expired, "expired"),
        (forged, "invalid"),
        (unsigned, "invalid"),
        (no_exp, "invalid"),
    ]:
        headers = {"Authorization": f"Bearer {token}"}
        response = await api.http.get("/v1/me/feeds/notification", headers=headers)
        assert_error(response, 401, "unauthorized")
        assert reason in response.json()["error"]["message"]


async def test_a_token_only_reaches_its_own_feeds(api: Api) -> None:
    app = api.app
    await app.feed("notification", "ana").add(app.activity(actor="cy", verb="like", object="p:1"))
    await app.feed("notification", "bo").add(app.activity(actor="cy", verb="like", object="p:2"))
    ana = (await api.http.get("/v1/me/feeds/notification", headers=api.user("ana"))).json()
    bo = (await api.http.get("/v1/me/feeds/notification", headers=api.user("bo"))).json()
    assert ana["groups"][0]["activities"][0]["object"] == "p:1"
    assert bo["groups"][0]["activities"][0]["object"] == "p:2"
    # Marking with bo's group id through ana's token changes nothing of bo's.
    bo_group = bo["groups"][0]["id"]
    body = {"seen": True, "read": True, "group_ids": [bo_group]}
    response = await api.http.post(
        "/v1/me/feeds/notification/mark", json=body, headers=api.user("ana")
    )
    assert response.json() == {"unseen": 1, "unread": 1}
    counts = await api.http.get("/v1/me/feeds/notification/counts", headers=api.user("bo"))
    assert counts.json() == {"unseen": 1, "unread": 1}
    # And there is no client route naming another user.
    response = await api.http.get("/v1/feeds/notification/bo", headers=api.user("ana"))
    assert response.status_code == 403


async def test_tokens_limited_to_feed_groups(api: Api) -> None:
    headers = api.user("bo", feeds=["notification"])
    assert (await api.http.get("/v1/me/feeds/notification", headers=headers)).status_code == 200
    response = await api.http.get("/v1/me/feeds/timeline", headers=headers)
    assert_error(response, 403, "forbidden", "group")


async def test_issued_tokens_work_and_ttl_is_capped(api: Api) -> None:
    response = await api.http.post(
        "/v1/tokens", json={"user": "bo", "ttl": 10**8}, headers=api.server()
    )
    assert response.status_code == 200
    body = response.json()
    assert body["expires_at"] <= time.time() + api.services.settings.max_token_ttl + 1
    headers = {"Authorization": f"Bearer {body['token']}"}
    assert (await api.http.get("/v1/me/feeds/notification", headers=headers)).status_code == 200
    response = await api.http.post(
        "/v1/tokens", json={"user": "bo", "feeds": ["nope"]}, headers=api.server()
    )
    assert_error(response, 404, "not_found", "group")
    response = await api.http.post("/v1/tokens", json={"user": "b o"}, headers=api.server())
    assert_error(response, 422, "invalid", "user")


async def test_malformed_json_is_400(api: Api) -> None:
    headers = {**api.server(), "Content-Type": "application/json"}
    response = await api.http.post(
        "/v1/feeds/notification/bo/mark", content=b"{not json", headers=headers
    )
    assert_error(response, 400, "malformed", "body")
    response = await api.http.post("/v1/feeds/notification/bo/mark", content=b"", headers=headers)
    assert_error(response, 400, "malformed", "body")


async def test_a_body_not_sent_as_json_is_415(api: Api) -> None:
    url = "/v1/feeds/notification/bo/mark"
    for content_type in [None, "text/plain", "application/x-www-form-urlencoded"]:
        headers = api.server()
        if content_type is not None:
            headers["Content-Type"] = content_type
        response = await api.http.post(url, content=b'{"seen": true, "all": true}',
                                       headers=headers)  # fmt: skip
        assert_error(response, 415, "unsupported_media_type", "Content-Type")
    for content_type in ["application/json; charset=utf-8", "application/merge-patch+json"]:
        response = await api.http.post(
            url, content=b'{"seen": true, "all": true}',
            headers={**api.server(), "Content-Type": content_type},
        )  # fmt: skip
        assert response.status_code == 200, response.text


async def test_failed_credentials_are_limited_per_client_address(api: Api) -> None:
    wrong = {"Authorization": "Bearer wrong-key-0123456789"}
    statuses = [
        (await api.http.get("/v1/feeds/user/ana", headers=wrong)).status_code for _ in range(30)
    ]
    assert statuses[:20] == [401] * 20 and statuses[20:] == [429] * 10
    # Past the budget the right key is refused too, before it is checked (a guesser cannot
    # tell a hit from a miss), until the address has waited.
    response = await api.http.get("/v1/feeds/user/ana", headers=api.server())
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
    forged = {"Authorization": "Bearer a.b.c"}  # user tokens count as well
    assert (await api.http.get("/v1/me/feeds/notification", headers=forged)).status_code == 429


async def test_unknown_and_mistyped_fields_are_422_naming_the_field(api: Api) -> None:
    url = "/v1/feeds/notification/bo/mark"
    response = await api.http.post(url, json={"seen": True, "colour": 1}, headers=api.server())
    assert_error(response, 422, "invalid", "colour")
    response = await api.http.post(url, json={"seen": "yes", "all": True}, headers=api.server())
    assert_error(response, 422, "invalid", "seen")
    response = await api.http.post(url, json={"all": True}, headers=api.server())
    assert_error(response, 422, "invalid", "seen")
    response = await api.http.get("/v1/feeds/user/bo?limit=abc", headers=api.server())
    assert_error(response, 422, "invalid", "limit")
    response = await api.http.get("/v1/feeds/user/bo?limit=500", headers=api.server())
    assert_error(response, 422, "invalid", "limit")
    response = await api.http.get("/v1/feeds/user/bo?id_lt=zz", headers=api.server())
    assert_error(response, 422, "invalid", "id_lt")
    response = await api.http.get("/v1/feeds/user/bo?sort=asc", headers=api.server())
    assert_error(response, 422, "invalid", "sort")
    response = await api.http.get("/v1/feeds/user/b%20o", headers=api.server())
    assert_error(response, 422, "invalid", "user")


async def test_unknown_routes_groups_and_methods(api: Api) -> None:
    assert_error(await api.http.get("/v1/nothing"), 404, "not_found")
    response = await api.http.get("/v1/feeds/nope/bo", headers=api.server())
    assert_error(response, 404, "not_found", "group")
    assert_error(await api.http.put("/v1/tokens"), 405, "method_not_allowed")


async def test_counts_of_a_flat_feed_is_422(api: Api) -> None:
    response = await api.http.get("/v1/feeds/user/bo/counts", headers=api.server())
    assert_error(response, 422, "invalid", "group")


async def test_body_size_limit_is_413(storage: object) -> None:
    import httpx

    from notifier.web.app import create_app
    from tests.web.conftest import make_services

    services = make_services(storage, server_settings(NOTIFIER_MAX_BODY_BYTES="2048"))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        big = {"seen": True, "group_ids": ["0" * 26] * 200}
        response = await http.post("/v1/feeds/notification/bo/mark", json=big, headers=headers)
        assert_error(response, 413, "too_large")
    await close_services(services)


async def test_rate_limits_answer_429_with_retry_after(storage: object) -> None:
    import httpx

    from notifier.web.app import create_app
    from tests.web.conftest import make_services

    settings = server_settings(NOTIFIER_USER_RATE="0.5", NOTIFIER_USER_BURST="3")
    services = make_services(storage, settings)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        token, _ = services.tokens.issue("bo", 600)
        headers = {"Authorization": f"Bearer {token}"}
        statuses = [
            (await http.get("/v1/me/feeds/notification", headers=headers)).status_code
            for _ in range(5)
        ]
        assert statuses[:3] == [200, 200, 200]
        response = await http.get("/v1/me/feeds/notification", headers=headers)
        assert_error(response, 429, "rate_limited")
        assert int(response.headers["retry-after"]) >= 1
        # Another user has a bucket of their own.
        other, _ = services.tokens.issue("cy", 600)
        response = await http.get(
            "/v1/me/feeds/notification", headers={"Authorization": f"Bearer {other}"}
        )
        assert response.status_code == 200
    await close_services(services)


async def test_cors_only_for_allowed_origins(api: Api) -> None:
    preflight = {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    ok = await api.http.options(
        "/v1/me/feeds/notification", headers={"Origin": ORIGIN, **preflight}
    )
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    evil = await api.http.options(
        "/v1/me/feeds/notification", headers={"Origin": "https://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in evil.headers
    assert evil.status_code == 400


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NOTIFIER_SECRET": "short"}, "NOTIFIER_SECRET"),
        ({"NOTIFIER_API_KEYS": ""}, "NOTIFIER_API_KEYS"),
        ({"NOTIFIER_API_KEYS": "tiny"}, "NOTIFIER_API_KEYS"),
        ({"NOTIFIER_ALLOWED_ORIGINS": "app.example"}, "NOTIFIER_ALLOWED_ORIGINS"),
        ({"NOTIFIER_PORT": "http"}, "NOTIFIER_PORT"),
        ({"NOTIFIER_USER_RATE": "-1"}, "NOTIFIER_USER_RATE"),
    ],
)
def test_bad_server_settings_fail_with_one_clear_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        server_settings(**env)


def test_settings_repr_hides_secrets() -> None:
    text = repr(server_settings())
    assert SECRET not in text and API_KEY not in text


async def test_a_repeated_query_parameter_is_an_error(api: Api) -> None:
    response = await api.http.get("/v1/users/bo/followers?limit=5&limit=6", headers=api.server())
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "limit"


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    from notifier.web import auth

    tokens = auth.UserTokens(SECRET, 60, 600)
    token, expires = tokens.issue("bo")
    assert tokens.verify(token).user == "bo"
    assert tokens.verify(token).user == "bo"  # the second time from memory
    monkeypatch.setattr(auth.time, "time", lambda: expires + 1.0)
    with pytest.raises(auth.Unauthorized, match="expired"):
        tokens.verify(token)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/v1/me/preferences"),
        ("DELETE", "/v1/me/feeds/notification/groups/06616437fa72c1506ecefbec81"),
        ("POST", "/v1/me/feeds/notification/snooze"),
    ],
)
async def test_cors_preflight_allows_every_method_the_client_api_uses(
    api: Api, method: str, path: str
) -> None:
    preflight = {
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    response = await api.http.options(path, headers={"Origin": ORIGIN, **preflight})
    assert response.status_code == 200, response.text
    assert method in response.headers["access-control-allow-methods"]
