"""Fanout throughput through real workers and Redis, next to raw pipelined ZADD, same run.

    .venv/bin/python -m tests.fanout.throughput --followers 50000 --processes 2

Starts a redis-server (or uses ``NOTIFIER_TEST_REDIS_URL``), follows one actor with N users,
starts ``notifier worker`` processes, then times ``add_activity`` → every chunk acknowledged
(follower-feed writes per second). The baseline writes the same number of feeds from this one
process with redis-py pipelines of ``chunk_size`` ZADD + ZREMRANGEBYRANK pairs (what a flat
feed write is), on the same server, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import time
import uuid
from dataclasses import dataclass

import redis

from tests.fanout.conftest import FEEDS, Harness, WorkerPool, make_config
from tests.services import RedisServer, redis_url


@dataclass
class Figures:
    followers: int
    processes: int
    threads: int
    chunk_size: int
    fanout_writes_per_s: list[float]
    raw_zadd_writes_per_s: list[float]

    def summary(self) -> str:
        fanout = statistics.median(self.fanout_writes_per_s)
        raw = statistics.median(self.raw_zadd_writes_per_s)
        return (
            f"{self.followers} followers, {self.processes} worker processes x {self.threads} "
            f"threads, chunks of {self.chunk_size}: fanout {fanout:,.0f} feed-writes/s "
            f"(runs: {', '.join(f'{r:,.0f}' for r in self.fanout_writes_per_s)}); raw pipelined "
            f"ZADD+trim {raw:,.0f} feed-writes/s; ratio {fanout / raw:.0%}"
        )


def raw_zadd(url: str, feeds: int, chunk_size: int, max_length: int = 1000) -> float:
    """Feed-writes/s of pipelined ZADD + trim into ``feeds`` fresh keys from this process."""
    client = redis.Redis.from_url(url)
    prefix = f"raw{uuid.uuid4().hex[:8]}"
    member = f"{time.time_ns():026x}"
    started = time.perf_counter()
    for start in range(0, feeds, chunk_size):
        pipe = client.pipeline(transaction=False)
        for n in range(start, min(start + chunk_size, feeds)):
            key = f"{prefix}:{n}"
            pipe.zadd(key, {member: 0})
            pipe.zremrangebyrank(key, 0, -max_length - 1)
        pipe.execute()
    elapsed = time.perf_counter() - started
    client.close()
    return feeds / elapsed


async def measure(
    url: str,
    *,
    followers: int = 10_000,
    processes: int = 2,
    threads: int = 8,
    chunk_size: int = 300,
    repeats: int = 3,
) -> Figures:
    """Run both measurements ``repeats`` times, alternating, on the Redis at ``url``."""
    # Only the flat timeline receives fanout here: one feed-write per follower.
    feeds = FEEDS.replace('fanout = true\nrule = "{{ verb }}:{{ actor }}"', 'rule = "{{ verb }}"')
    config, path = make_config(
        url, f"tp{uuid.uuid4().hex[:8]}", feeds=feeds, chunk_size=chunk_size, threads=threads
    )
    assert [g.name for g in config.feeds.fanout_groups] == ["timeline"]
    from notifier.fanout.runtime import open_manager

    harness = Harness("redis", config, open_manager(config), pool=WorkerPool(path, threads))
    assert harness.pool is not None
    try:
        await harness.follow_all([f"u{i:07d}" for i in range(followers)], "star")
        harness.pool.start(processes)
        # Warm up: workers connected, scripts loaded.
        await harness.manager.add_activity(
            harness.app().activity(actor="star", verb="post", object="w")
        )
        await harness.manager.join(120)
        fanout: list[float] = []
        raw: list[float] = []
        for n in range(repeats):
            post = harness.app().activity(actor="star", verb="post", object=f"p{n}")
            started = time.perf_counter()
            await harness.manager.add_activity(post)
            await harness.manager.join(300)
            fanout.append(followers / (time.perf_counter() - started))
            raw.append(await asyncio.to_thread(raw_zadd, url, followers, chunk_size))
        return Figures(followers, processes, threads, chunk_size, fanout, raw)
    finally:
        await harness.manager.close()
        harness.pool.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--followers", type=int, default=50_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--chunk-size", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    async def run(url: str) -> None:
        figures = await measure(
            url,
            followers=args.followers,
            processes=args.processes,
            threads=args.threads,
            chunk_size=args.chunk_size,
            repeats=args.repeats,
        )
        print(figures.summary())

    binary = shutil.which("redis-server")
    if binary is None:
        with redis_url() as url:  # NOTIFIER_TEST_REDIS_URL
            asyncio.run(run(url))
        return
    server = RedisServer(binary)
    server.start()
    try:
        asyncio.run(run(server.url))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
