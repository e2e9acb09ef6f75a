"""notifier's Redis client packs commands with hiredis and still behaves as redis-py does."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import DataError

from notifier.storage.redis_client import HiredisConnection, redis_client

pytestmark = pytest.mark.single_redis


async def test_commands_round_trip_through_the_c_packer(redis_url: str) -> None:
    client = redis_client(redis_url)
    try:
        assert client.connection_pool.connection_class is HiredisConnection
        await client.delete("pack:h")
        await client.hset("pack:h", mapping={"s": "é", "i": 7, "f": 1.5, "b": b"\x00\xff"})
        await client.hset("pack:h", "ba", bytearray(b"ab"))  # redis-py's packer takes these
        got = await client.hgetall("pack:h")
        assert got == {b"s": "é".encode(), b"i": b"7", b"f": b"1.5", b"b": b"\x00\xff",
                       b"ba": b"ab"}  # fmt: skip
        assert await client.config_get("maxclients")  # a two-word command name
        async with client.pipeline(transaction=False) as pipe:
            pipe.set("pack:a", "1")
            pipe.incrby("pack:a", 41)
            assert await pipe.execute() == [True, 42]
    finally:
        await client.delete("pack:h", "pack:a")
        await client.aclose()


@pytest.mark.parametrize("value", [True, None])
async def test_what_redis_py_rejects_is_still_rejected(redis_url: str, value: object) -> None:
    client = redis_client(redis_url)
    try:
        with pytest.raises(DataError):
            await client.set("pack:x", value)  # type: ignore[arg-type]
    finally:
        await client.aclose()


def test_tls_and_unix_urls_keep_their_connection_kind() -> None:
    tls = redis_client("rediss://example.invalid:6380/0")
    unix = redis_client("unix:///tmp/nowhere.sock")
    assert issubclass(tls.connection_pool.connection_class, aioredis.SSLConnection)
    assert issubclass(unix.connection_pool.connection_class, aioredis.UnixDomainSocketConnection)


async def test_new_connections_do_not_look_up_the_package_metadata(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis.utils

    def looked_up() -> str:
        raise AssertionError("redis-py's version read from package metadata per connection")

    monkeypatch.setattr(redis.utils, "get_lib_version", looked_up)
    client = redis_client(redis_url)
    try:
        await asyncio.gather(*(client.ping() for _ in range(20)))  # grows the pool
        assert len(client.connection_pool._available_connections) > 1
    finally:
        await client.aclose()
