"""The peer benchmark runs Stream Framework for real (small): it installs into its own venv,
writes every follower's feeds in Redis and reports a positive rate for each workload.
Timings are printed by the benchmark, never asserted here. The first run needs PyPI (the venv is
cached in .bench/ afterwards)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from notifier.bench import peer

PEER_DB = 7
"""A db of the peer's own on the session's redis-server, apart from the other tests' db 0."""


@pytest.fixture
def peer_redis(redis_url: str) -> Iterator[str]:
    """The session's Redis with the peer's db number; the peer's keys are deleted afterwards."""
    url = redis_url.rsplit("/", 1)[0] + f"/{PEER_DB}"
    yield url
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=peer.KEY_PREFIX + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.mark.timeout(600)
def test_peer_fans_out_into_every_follower_feed_and_reports_each_rate(peer_redis: str) -> None:
    lines: list[str] = []
    result = peer.run_peer(
        peer_redis,
        followers=300,
        activities=1,
        reads_seconds=1.0,
        progress=lines.append,
        keep_keys=True,
    )
    print("\n".join(lines))
    print(peer.table(result))
    assert result.available, result.reason
    assert result.reason is None
    assert result.version == "1.4.0"
    assert result.followers == 300
    for rate in (
        result.flat_writes_per_s,
        result.notification_writes_per_s,
        result.reads_per_s,
        result.read_p50_ms,
        result.read_p99_ms,
    ):
        assert isinstance(rate, float) and rate > 0
    assert result.read_p50_ms is not None and result.read_p99_ms is not None
    assert result.read_p50_ms <= result.read_p99_ms

    client = redis.Redis.from_url(peer_redis, decode_responses=True)
    keys = set(client.scan_iter(match="*", count=1000))
    assert keys and all(key.startswith(peer.KEY_PREFIX) for key in keys)
    flat = {key for key in keys if key.startswith(peer.KEY_PREFIX + "feed:")}
    assert len(flat) == 300 + 1  # every follower, and the 1,000-item feed the reads use
    assert client.zcard(peer.KEY_PREFIX + "feed:reader") == 1_000
    # One follower's flat feed holds the activity's id, and the activity itself is stored.
    ids = client.zrange(peer.KEY_PREFIX + "feed:300", 0, -1)
    assert len(ids) == 1
    activity_id = str(ids[0])
    stored = [
        client.hget(key, activity_id)
        for key in keys
        if key.startswith(peer.KEY_PREFIX + "activity:")
    ]
    assert any(stored)
    # Its notification feed holds one aggregated group, unseen and unread.
    assert client.zcard(peer.KEY_PREFIX + "notification_feed:300") == 1
    assert sum(key.startswith(peer.KEY_PREFIX + "notification_feed:") for key in keys) == 300
    assert sum(key.endswith((":unseen", ":unread")) for key in keys) == 600
    client.close()


@pytest.mark.timeout(600)
def test_peer_says_why_when_the_driver_cannot_reach_redis() -> None:
    """A failure becomes an unavailable result with a reason, not an exception in the bench."""
    result = peer.run_peer(
        "redis://127.0.0.1:1/7", followers=10, activities=1, reads_seconds=0.1, timeout_s=120
    )
    assert not result.available
    assert result.reason and "driver failed" in result.reason
    assert result.flat_writes_per_s is None
