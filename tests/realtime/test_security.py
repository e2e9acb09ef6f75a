"""Who may connect and what ends a connection: every refusal has its documented close code
(or, before the handshake completes, its HTTP status). Memory backend: none of this depends
on storage."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

import jwt
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from notifier.storage.base import Storage
from notifier.storage.memory import MemoryStorage
from tests.realtime.conftest import Live, LiveFactory
from tests.web.conftest import ORIGIN

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def storage() -> AsyncIterator[Storage]:
    store = MemoryStorage()
    yield store
    await store.close()


async def closed_with(ws: websockets.ClientConnection, within: float = 10) -> tuple[int, str]:
    """Read until the server closes; its close code and reason."""
    with pytest.raises(websockets.ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(ws.recv(), within)
    assert info.value.rcvd is not None, "closed without a close frame"
    return info.value.rcvd.code, info.value.rcvd.reason


async def auth_then_close(live: Live, token: str) -> tuple[int, str]:
    async with websockets.connect(live.ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        return await closed_with(ws)


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda live: "not-a-jwt", "invalid user token"),
        (lambda live: live.token("bo", ttl=1)[:-4] + "AAAA", "invalid user token"),
        (
            lambda live: jwt.encode(
                {"sub": "bo", "exp": int(time.time()) + 600, "aud": "notifier"},
                "another-secret-of-forty-characters-xxxxxx",
                algorithm="HS256",
            ),
            "invalid user token",
        ),
        (
            lambda live: jwt.encode(
                {"sub": "bo", "exp": int(time.time()) - 5, "aud": "notifier"},
                "s" * 40,
                algorithm="HS256",
            ),
            "expired",
        ),
    ],
    ids=["garbage", "tampered", "forged", "expired"],
)
async def test_bad_tokens_are_closed_with_4401(live: Live, make_token: object, reason: str) -> None:
    assert callable(make_token)
    code, text = await auth_then_close(live, make_token(live))
    assert code == 4401 and reason in text


async def test_an_api_key_is_not_a_user_token(live: Live) -> None:
    code, _ = await auth_then_close(live, "test-api-key-0123456789")
    assert code == 4401


async def test_no_auth_message_in_time_is_4401(live_factory: LiveFactory) -> None:
    live: Live = await live_factory(NOTIFIER_WS_AUTH_TIMEOUT="0.3")
    async with websockets.connect(live.ws_url) as ws:
        code, reason = await closed_with(ws)
    assert code == 4401 and "no auth message" in reason


async def test_the_first_message_must_be_auth(live: Live) -> None:
    async with websockets.connect(live.ws_url) as ws:
        await ws.send(json.dumps({"type": "subscribe", "feed": "notification"}))
        code, reason = await closed_with(ws)
    assert code == 4401 and "first message must be auth" in reason


async def test_a_foreign_origin_is_refused_before_the_handshake(live: Live) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(live.ws_url, additional_headers={"Origin": "https://evil.example"})
    assert refused.value.response.status_code == 403
    assert b"origin" in refused.value.response.body
    async with websockets.connect(live.ws_url, additional_headers={"Origin": ORIGIN}) as ws:
        await ws.send(json.dumps({"type": "auth", "token": live.token("bo")}))
        assert json.loads(await ws.recv())["type"] == "welcome"


async def test_a_token_subprotocol_without_the_protocol_name_is_refused(live: Live) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(
            live.ws_url,
            subprotocols=[f"bearer.{live.token('bo')}"],  # type: ignore[list-item]
        )
    assert refused.value.response.status_code == 400


async def test_refused_handshakes_are_logged_as_the_clients_mistake_not_an_error(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for headers, protocols in [({"Origin": "https://evil.example"}, None),
                               (None, ["bearer.x"])]:  # fmt: skip
        with pytest.raises(InvalidStatus):
            await websockets.connect(
                live.ws_url, additional_headers=headers, subprotocols=protocols
            )
    server_side = [r for r in caplog.records if not r.name.startswith("websockets.client")]
    assert not [r for r in server_side if r.levelno >= logging.WARNING or r.exc_info]


async def test_a_token_for_some_feeds_cannot_subscribe_to_others(live: Live) -> None:
    async with websockets.connect(live.ws_url) as ws:
        token = live.token("bo", feeds=["timeline"])
        await ws.send(json.dumps({"type": "auth", "token": token}))
        await ws.recv()
        await ws.send(json.dumps({"type": "subscribe", "feed": "timeline"}))
        assert json.loads(await ws.recv())["type"] == "sync"
        await ws.send(json.dumps({"type": "subscribe", "feed": "notification"}))
        code, reason = await closed_with(ws)
    assert code == 4403 and "notification" in reason


@pytest.mark.parametrize(
    ("message", "code", "words"),
    [
        ("{not json", 4400, "bad message"),
        (json.dumps({"type": "subscribe"}), 4400, "feed"),
        (json.dumps({"type": "subscribe", "feed": "notification", "user": "cy"}), 4400, "user"),
        (json.dumps({"type": "subscribe", "feed": "notification", "limit": 500}), 4400, "limit"),
        (json.dumps({"type": "subscribe", "feed": "nope"}), 4404, "nope"),
        (json.dumps({"type": "shout"}), 4400, "bad message"),
        (json.dumps({"type": "auth", "token": "again"}), 4400, "already authenticated"),
        (json.dumps({"type": "window", "feed": "notification", "oldest": ""}), 4400, "not sub"),
        (json.dumps({"type": "ping", "pad": "x" * 9000}), 1009, ""),
    ],
    ids=["json", "missing", "unknown-field", "limit", "feed", "type", "auth", "window", "big"],
)
async def test_bad_messages_close_with_their_code(
    live: Live, message: str, code: int, words: str
) -> None:
    async with websockets.connect(live.ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": live.token("bo")}))
        await ws.recv()
        await ws.send(message)
        got, reason = await closed_with(ws)
    assert got == code and words in reason


async def test_binary_frames_are_refused(live: Live) -> None:
    async with websockets.connect(live.ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": live.token("bo")}))
        await ws.recv()
        await ws.send(b"\x00\x01")
        code, _ = await closed_with(ws)
    assert code == 4400


async def test_an_idle_connection_is_closed_and_pings_keep_it(live_factory: LiveFactory) -> None:
    live: Live = await live_factory(NOTIFIER_WS_IDLE_TIMEOUT="0.6")
    async with websockets.connect(live.ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": live.token("bo")}))
        await ws.recv()
        for _ in range(4):  # 1.2 s in all, alive because it pings
            await asyncio.sleep(0.3)
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await ws.recv()) == {"type": "pong"}
        code, reason = await closed_with(ws)
    assert code == 4408 and "idle" in reason


async def test_connections_per_user_are_capped(live_factory: LiveFactory) -> None:
    live: Live = await live_factory(NOTIFIER_WS_MAX_PER_USER="2")
    tabs = [live.client("bo") for _ in range(2)]
    for tab in tabs:
        await tab.connect()
    async with websockets.connect(live.ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": live.token("bo")}))
        code, _ = await closed_with(ws)
    assert code == 4409
    other = live.client("cy")
    await other.connect()  # the cap is per user
    await tabs[0].close()
    again = live.client("bo")
    await again.connect()  # a closed tab frees its place
    for client in (tabs[1], other, again):
        await client.close()


async def test_the_connection_ends_when_its_token_expires(live: Live) -> None:
    async with websockets.connect(live.ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": live.token("bo", ttl=1)}))
        welcome = json.loads(await ws.recv())
        assert welcome["expires"] <= time.time() + 1
        code, reason = await closed_with(ws, within=5)
    assert code == 4401 and "expired" in reason
