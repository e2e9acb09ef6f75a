"""The web process guards its own connections: a client that connects and sends nothing, or
half a request, is answered 408 and closed; an idle keep-alive connection is closed; past
``max_connections`` a request gets 503. Raw sockets against the real server and options."""

from __future__ import annotations

import asyncio

import pytest

from tests.realtime.conftest import Live, LiveFactory

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.parametrize("storage_factory", ["memory"], indirect=True),
]


async def read_all(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything the server sends until it closes the connection (fails if it does not)."""
    return await asyncio.wait_for(reader.read(), within)


async def test_a_connection_that_sends_nothing_or_half_a_request_is_closed(
    live_factory: LiveFactory,
) -> None:
    live: Live = await live_factory(NOTIFIER_HEADER_TIMEOUT="0.5")
    silent = await asyncio.open_connection("127.0.0.1", live.port)
    half = await asyncio.open_connection("127.0.0.1", live.port)
    half[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    trickle = await asyncio.open_connection("127.0.0.1", live.port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for byte in b"GET /healthz HTTP/1.1\r\n":  # a byte now and then keeps nothing open
        try:
            trickle[1].write(bytes([byte]))
            await trickle[1].drain()
        except ConnectionError:
            break  # closed on us: what this test wants
        await asyncio.sleep(0.1)
    for reader, _ in (silent, half, trickle):
        try:
            answer = await read_all(reader, within=5)
        except ConnectionError:  # the trickler's next byte met the closed socket
            assert reader is trickle[0]
            continue
        assert answer.startswith(b"HTTP/1.1 408"), answer
    assert loop.time() - started < 4
    for _, writer in (silent, half, trickle):
        writer.close()
    # A request sent in time is served as usual.
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await read_all(reader, within=5)).startswith(b"HTTP/1.1 200")
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed(live_factory: LiveFactory) -> None:
    live: Live = await live_factory(NOTIFIER_KEEP_ALIVE="0.5", NOTIFIER_HEADER_TIMEOUT="30")
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await read_all(reader, within=5)  # the response, then the close
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'"checks":{}}')
    writer.close()


async def test_past_max_connections_requests_get_503(live_factory: LiveFactory) -> None:
    live: Live = await live_factory(NOTIFIER_MAX_CONNECTIONS="5")
    held = [await asyncio.open_connection("127.0.0.1", live.port) for _ in range(5)]
    await asyncio.sleep(0.1)
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await read_all(reader, within=5)).startswith(b"HTTP/1.1 503")
    writer.close()
    for _, w in held:
        w.close()
