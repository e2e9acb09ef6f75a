"""Stream Framework's side of the peer benchmark, run by notifier/bench/peer.py in its own venv.

Why a separate interpreter: stream-framework 1.4.0 needs redis-py < 3 (it imports
``redis.client.BasePipeline``), notifier needs redis-py 5, and one venv cannot hold both. So this
file is self-contained: it never imports notifier, and it imports Stream Framework and redis
through ``importlib`` so that mypy, run from notifier's venv (which has neither of those
versions), sees them as ``Any`` rather than checking them against the wrong library.

Why the feeds are driven directly: Stream Framework's ``feed_managers/base.py`` does not parse on
Python >= 3.7 (a parameter named ``async``), so this does what its Celery fanout task does, with
no Celery: for each chunk of 100 followers, open ``FeedClass.get_timeline_batch_interface()`` and
call ``FeedClass(follower).add_many([activity], batch_interface=batch)`` per follower.

Every key it writes starts with ``--prefix`` (Stream Framework has no prefix setting, so the feed
and storage classes are subclassed with prefixed key formats), and only keys under that prefix are
ever deleted: never FLUSHDB. Progress goes to stderr; one JSON object with the rates to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import statistics
import sys
import time
from typing import Any

FANOUT_CHUNK = 100
"""Stream Framework's ``fanout_chunk_size``: followers written through one batch interface."""
READ_FEED_LENGTH = 1_000
PAGE = 25


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _module(name: str) -> Any:
    """Import ``name`` typed as ``Any`` (it is a Stream Framework or redis-py 2 module)."""
    return importlib.import_module(name)


def configure(host: str, port: int, db: int, password: str | None) -> str:
    """Point Stream Framework at this Redis; returns its version.

    Its connection pool is built lazily from ``settings.STREAM_REDIS_CONFIG`` on the first
    command, so setting the attribute before any feed touches Redis is enough."""
    settings = _module("stream_framework.settings")
    settings.STREAM_REDIS_CONFIG = {
        "default": {"host": host, "port": port, "db": db, "password": password}
    }
    return str(_module("stream_framework").__version__)


def feed_classes(prefix: str) -> tuple[Any, Any]:
    """The flat Redis feed and the Redis notification feed, with every key under ``prefix``.

    Only key formats change; storage, serialisation and aggregation are Stream Framework's own
    (the notification feed keeps its default ``NotificationAggregator``)."""
    redis_feeds = _module("stream_framework.feeds.redis")
    notification = _module("stream_framework.feeds.notification_feed.redis")
    activity_storage = _module("stream_framework.storage.redis.activity_storage")
    lists_storage = _module("stream_framework.storage.redis.lists_storage")

    def activity_key(self: Any) -> str:
        # The stock storage keeps every activity in hashes named "global:0" .. "global:9".
        return prefix + "activity"

    storage = type(
        "PeerActivityStorage",
        (activity_storage.RedisActivityStorage,),
        {"get_key": activity_key},
    )
    flat = type(
        "PeerFlatFeed",
        (redis_feeds.RedisFeed,),
        {"key_format": prefix + "feed:%(user_id)s", "activity_storage_class": storage},
    )
    markers = type(
        "PeerListsStorage",
        (lists_storage.RedisListsStorage,),
        # The marker lists' keys embed markers_key_format; prefixing here covers them.
        {"key_format": prefix + "list:%(key)s:%(list)s"},
    )
    notifications = type(
        "PeerNotificationFeed",
        (notification.RedisNotificationFeed,),
        {
            "key_format": prefix + "notification_feed:%(user_id)s",
            "lock_format": prefix + "notification_feed:%(user_id)s:lock",
            "markers_storage_class": markers,
        },
    )
    return flat, notifications


def make_activities(count: int, *, first_object: int, actor: int = 1) -> list[Any]:
    """``count`` distinct activities (``Add`` verb, one object each, one second apart).

    Distinct objects and times give distinct ids, so nothing is deduplicated, and each becomes
    its own group under the notification aggregator (verb + object + day)."""
    activity = _module("stream_framework.activity")
    verb = _module("stream_framework.verbs.base").Add
    now = datetime.datetime.utcnow().replace(microsecond=0)
    return [
        activity.Activity(
            actor=actor,
            verb=verb,
            object=first_object + i,
            time=now - datetime.timedelta(seconds=count - i),
        )
        for i in range(count)
    ]


def fanout(feed_class: Any, activity: Any, followers: list[int]) -> float:
    """Write ``activity`` into every follower's feed as Stream Framework's fanout task does;
    returns follower-feed writes per second."""
    start = time.perf_counter()
    for at in range(0, len(followers), FANOUT_CHUNK):
        with feed_class.get_timeline_batch_interface() as batch:
            for follower in followers[at : at + FANOUT_CHUNK]:
                feed_class(follower).add_many([activity], batch_interface=batch)
    return len(followers) / (time.perf_counter() - start)


def median_fanout(name: str, feed_class: Any, activities: list[Any], followers: list[int]) -> float:
    """Fan out each activity in turn; the median rate, so one slow round (a trim, a page fault
    storm in Redis) does not decide the figure."""
    rates: list[float] = []
    for n, activity in enumerate(activities, 1):
        rates.append(fanout(feed_class, activity, followers))
        _say(f"{name} fanout {n}/{len(activities)}: {rates[-1]:,.0f} feed-writes/s")
    return statistics.median(rates)


def measure_reads(feed: Any, seconds: float) -> tuple[float, list[float]]:
    """``feed[:25]`` repeated for ``seconds``; returns reads per second and each read's ms."""
    if len(feed[:PAGE]) != PAGE:  # also warms the connection pool
        raise RuntimeError(f"the seeded feed returned fewer than {PAGE} activities")
    latencies: list[float] = []
    start = time.perf_counter()
    deadline = start + seconds
    now = start
    while now < deadline:
        feed[:PAGE]
        after = time.perf_counter()
        latencies.append((after - now) * 1000)
        now = after
    return len(latencies) / (now - start), latencies


def percentile(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def delete_prefixed(connection: Any, prefix: str) -> int:
    """Delete the keys under ``prefix`` (a previous run's, or this one's); nothing else."""
    deleted = 0
    batch: list[Any] = []
    for key in connection.scan_iter(match=prefix + "*", count=1000):
        batch.append(key)
        if len(batch) == 1000:
            deleted += connection.delete(*batch)
            batch = []
    if batch:
        deleted += connection.delete(*batch)
    return int(deleted)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """All three workloads; the rates as a JSON-ready dict."""
    version = configure(args.host, args.port, args.db, args.password)
    connection = _module("stream_framework.storage.redis.connection").get_redis_connection()
    stale = delete_prefixed(connection, args.prefix)
    if stale:
        _say(f"deleted {stale} keys left under {args.prefix!r} by an earlier run")
    flat, notifications = feed_classes(args.prefix)
    followers = list(range(1, args.followers + 1))
    activities = make_activities(args.activities, first_object=1_000_000)
    # The manager stores an activity once before fanning out its id; so does this.
    flat.insert_activities(activities)

    flat_rate = median_fanout("flat", flat, activities, followers)
    notification_rate = median_fanout("notification", notifications, activities, followers)
    for follower in (followers[0], followers[-1]):
        if flat(follower).count() != len(activities):
            raise RuntimeError(f"flat feed of follower {follower} lacks the fanned-out activities")
        if notifications(follower).count() < 1:
            raise RuntimeError(f"notification feed of follower {follower} is empty")

    seeded = make_activities(READ_FEED_LENGTH, first_object=1, actor=2)
    flat.insert_activities(seeded)
    reader = flat("reader")
    # trim=False: the stock max_length (100) would otherwise cut the seeded feed now and then.
    reader.add_many(seeded, trim=False)
    if reader.count() != READ_FEED_LENGTH:
        raise RuntimeError(f"seeded read feed holds {reader.count()} items")
    reads_per_s, latencies = measure_reads(reader, args.reads_seconds)
    _say(f"reads: {reads_per_s:,.0f} reads/s of feed[:{PAGE}]")

    if not args.keep_keys:
        delete_prefixed(connection, args.prefix)
    return {
        "version": version,
        "followers": args.followers,
        "activities": args.activities,
        "flat_writes_per_s": flat_rate,
        "notification_writes_per_s": notification_rate,
        "reads_per_s": reads_per_s,
        "reads": len(latencies),
        "read_p50_ms": percentile(latencies, 50),
        "read_p99_ms": percentile(latencies, 99),
        "python": sys.version.split()[0],
        "redis_py": str(_module("redis").__version__),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--db", type=int, required=True)
    # From the environment, not argv, so that it does not show in the process list.
    parser.set_defaults(password=os.environ.get("PEER_REDIS_PASSWORD") or None)
    parser.add_argument("--prefix", default="sfpeer:")
    parser.add_argument("--followers", type=int, default=10_000)
    parser.add_argument("--activities", type=int, default=3)
    parser.add_argument("--reads-seconds", type=float, default=5.0)
    parser.add_argument("--keep-keys", action="store_true", help="leave the feeds for inspection")
    args = parser.parse_args(argv)
    if not args.prefix or args.followers < 1 or args.activities < 1:
        parser.error("--prefix must be non-empty; --followers and --activities at least 1")
    print(json.dumps(run(args)), flush=True)


if __name__ == "__main__":
    main()
