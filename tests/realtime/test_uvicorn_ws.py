"""The lean uvicorn websocket protocol: real uvicorn, real websockets clients.

It must behave as uvicorn's own for the application (receive, send, close), drop the
handshake once answered, and write prepared frames straight to the socket only when that is
the same as sending through ASGI (not when the connection compresses)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import connect

from notifier.bench.procs import free_port
from notifier.realtime.settings import RealtimeSettings, uvicorn_options
from notifier.realtime.uvicorn_ws import SEND_PREPARED, LeanWebSocketProtocol, prepared_frame

Seen = dict[str, Any]


def echo_app(seen: Seen) -> Callable[..., Any]:
    """Accepts, reports what it saw, sends one prepared frame and echoes each message."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        assert (await receive())["type"] == "websocket.connect"
        seen["origin_before_accept"] = dict(scope["headers"]).get(b"origin")
        await send({"type": "websocket.accept"})
        seen["headers_after_accept"] = list(scope["headers"])
        direct = scope["extensions"].get(SEND_PREPARED)
        seen["direct"] = direct is not None and direct(prepared_frame("prepared é"))
        if not seen["direct"]:
            await send({"type": "websocket.send", "text": "prepared é"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": "echo:" + message["text"]})

    return app


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def start(app: Any, *, compression: bool = False) -> str:
        port = free_port()
        options = uvicorn_options(RealtimeSettings(compression=compression))
        assert issubclass(options["ws"], LeanWebSocketProtocol)
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                lifespan="off", **options)  # fmt: skip
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
            await asyncio.sleep(0.01)
        servers.append((server, task))
        return f"ws://127.0.0.1:{port}/"

    yield start
    for server, task in servers:
        server.should_exit = True
        await task


async def test_prepared_frames_go_out_as_is_and_the_handshake_is_dropped(serve: Any) -> None:
    seen: Seen = {}
    url = await serve(echo_app(seen))
    origin: Any = "https://app.example"
    async with connect(url, origin=origin, compression=None) as ws:
        assert await ws.recv() == "prepared é"
        for n in range(3):
            await ws.send(json.dumps({"n": n}))
            assert await ws.recv() == f'echo:{{"n": {n}}}'
    assert seen["origin_before_accept"] == b"https://app.example"
    assert seen["headers_after_accept"] == []
    assert seen["direct"] is True


async def test_a_compressed_connection_is_sent_to_through_asgi(serve: Any) -> None:
    seen: Seen = {}
    url = await serve(echo_app(seen), compression=True)
    async with connect(url) as ws:  # offers permessage-deflate
        assert await ws.recv() == "prepared é"
        await ws.send("x")
        assert await ws.recv() == "echo:x"
    assert seen["direct"] is False


async def test_a_closed_connection_takes_no_prepared_frame(serve: Any) -> None:
    done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        assert (await receive())["type"] == "websocket.disconnect"
        done.set_result(scope["extensions"][SEND_PREPARED](prepared_frame("late")))

    url = await serve(app)
    async with connect(url, compression=None):
        pass
    assert await asyncio.wait_for(done, 10) is False
