"""The fanout bench's raw aggregated baseline does the work it stands for: it merges into the
newest group with the key inside the merge window, keeps exact unseen / unread counts, and
trims the oldest group of a full feed (a baseline doing less would flatter notifier)."""

from __future__ import annotations

import uuid

import redis

from notifier.bench.fanout import _AGGREGATED_LUA, drop_raw, raw_aggregated


def test_the_aggregated_baseline_merges_counts_and_trims(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    script = client.register_script(_AGGREGATED_LUA)
    feed = f"aggt{uuid.uuid4().hex[:8]}:bo:"

    def write(n: int, key: str, window: int = 2, max_length: int = 3) -> None:
        script(keys=[feed], args=[window, max_length, f"{n:026x}", key])

    def groups() -> list[str]:
        return list(reversed(client.zrange(feed + "o", 0, -1)))

    def counts() -> tuple[int, int]:
        u, r = client.hmget(feed + "h", "u", "r")
        return int(u), int(r)

    try:
        write(1, "a")
        write(2, "b")
        write(3, "a")  # "a" is 2nd newest: inside a window of 2, merged
        assert groups() == [f"{1:026x}", f"{2:026x}"]
        assert counts() == (2, 2)
        client.hset(feed + "h", f"{1:026x}", "11a")  # the user saw and read group "a"...
        client.hset(feed + "h", mapping={"u": 1, "r": 1})
        write(4, "a")  # ...which a new activity makes unseen and unread again
        assert counts() == (2, 2)
        write(5, "c")
        write(6, "d")  # the feed is full: its oldest group ("b") is trimmed, index and all
        write(7, "b")  # a new "b" group; "a" trimmed
        assert [client.hget(feed + "h", g)[2:] for g in groups()] == ["b", "d", "c"]
        assert counts() == (3, 3)
        assert client.zcard(feed + "e") == 3  # the trimmed groups' ids went with them
    finally:
        drop_raw(redis_url, feed.split(":")[0])
        client.close()


def test_the_aggregated_baseline_writes_every_feed(redis_url: str) -> None:
    prefix = f"aggr{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    try:
        assert raw_aggregated(redis_url, feeds=250, times=3, max_length=2, prefix=prefix) > 0
        for n in (0, 99, 100, 249):
            assert client.zcard(f"{prefix}:{n}:o") == 2
            assert client.hmget(f"{prefix}:{n}:h", "u", "r") == [b"2", b"2"]
    finally:
        drop_raw(redis_url, prefix)
        client.close()
