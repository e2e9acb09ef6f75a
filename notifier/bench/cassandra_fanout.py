"""Fanout on Cassandra: follower-feed writes per second through the whole path, next to the
raw cassandra-driver writing the same rows, in the same run.

notifier: ``notifier serve`` and ``notifier worker`` processes on Cassandra storage (a fresh
keyspace), the dramatiq broker and the realtime bus on a redis-server; a burst of activities
POSTed at once, timed from the first POST until the workers have announced the last
follower-feed write on the realtime bus (they publish right after each write: the same clock
as ``notifier bench fanout`` on Redis). Flat timelines only.

Baseline: the rows those writes leave, one ``flat_feeds (ns, feed, id)`` row per follower and
activity (same table, same partition key shape, same clustering column, under another
``ns``), inserted from one process with one prepared statement through the driver's
``execute_concurrent_with_args``: no reads, no batches, as fast as the driver goes here.
notifier does more for each row (it reads the feed's head to keep the write idempotent and
the feed trimmed, and publishes the change), so the ratio says what that costs.

CPU per write of the worker processes and of the baseline's process, and of the Cassandra
node when its pid is known, show where the time goes.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx

from notifier.bench import cassandra_node
from notifier.bench.fanout import Burst, WriteWatch
from notifier.bench.procs import (
    StackRunner,
    _folder,
    cpu_seconds,
    free_port,
    processes,
    redis_command,
    spawn,
    wait_port,
)
from notifier.config import Config
from notifier.fanout.actors import FanoutActors
from notifier.fanout.broker import make_broker
from notifier.fanout.settings import FanoutSettings
from notifier.storage.cassandra import CassandraStorage
from notifier.storage.cassandra_session import CassandraSettings

Progress = Callable[[str], None]
PREFIX = "bench"  # the storage prefix StackRunner configures
GROUP = "timeline"
RAW_CONCURRENCY = 256
"""Requests the baseline keeps in flight (``execute_concurrent``'s window)."""


@dataclass
class CassandraFanoutResult:
    """Medians over repetitions."""

    followers: int
    workers: int
    burst: int
    notifier: float
    """Follower-feed writes/s through the whole path."""
    raw: float
    """The same rows/s inserted by the raw driver."""
    notifier_seconds: float
    """Seconds from the first POST to the last write of a burst."""
    worker_cpu_us: float
    """CPU of all worker processes per follower-feed write."""
    raw_cpu_us: float
    """CPU of the baseline's process per row."""
    runs: list[float] = field(default_factory=list)
    raw_runs: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.notifier / self.raw


def raw_inserts(hosts: str, keyspace: str, rows: list[tuple[str, str, str]]) -> tuple[float, float]:
    """Insert ``rows`` ``(ns, feed, id)`` into ``flat_feeds`` with one prepared statement and
    ``execute_concurrent_with_args``; returns (rows/s, CPU µs of this process per row)."""
    from cassandra.cluster import Cluster
    from cassandra.concurrent import execute_concurrent_with_args

    where = CassandraSettings.from_url(f"cassandra://{hosts}")
    cluster = Cluster(list(where.hosts), port=where.port, protocol_version=5)
    try:
        session = cluster.connect(keyspace)
        insert = session.prepare("INSERT INTO flat_feeds (ns, feed, id) VALUES (?, ?, ?)")
        execute_concurrent_with_args(session, insert, rows[:100], concurrency=RAW_CONCURRENCY)
        cpu = time.process_time()
        started = time.perf_counter()
        results: Any = execute_concurrent_with_args(
            session, insert, rows, concurrency=RAW_CONCURRENCY, raise_on_first_error=True
        )
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        if not all(ok for ok, _ in results):
            raise RuntimeError("a raw insert failed")
        return len(rows) / elapsed, cpu / len(rows) * 1e6
    finally:
        cluster.shutdown()


async def run(
    *,
    followers: int = 1_000,
    workers: int = 2,
    repeats: int = 3,
    burst: int | None = None,
    cassandra: str | None = None,
    progress: Progress | None = None,
) -> CassandraFanoutResult:
    """``repeats`` bursts of ``burst`` activities (default: enough for 20,000 feed-writes,
    at least 10, at most 300 so every timeline stays under its 1,000 ids) fanned out to
    ``followers``, each followed by the raw driver inserting as many rows. ``cassandra``:
    ``host:port`` of a running node; by default one is started and stopped."""
    say = progress or (lambda _: None)
    burst = burst or min(300, max(10, 20_000 // max(followers, 1)))
    with ExitStack() as cleanup:
        if not cassandra:
            say("cassandra fanout: starting a Cassandra node")
        hosts = cleanup.enter_context(cassandra_node.node(cassandra))
        url = cleanup.enter_context(cassandra_node.keyspace(hosts))
        keyspace = url.split("/")[3].split("?")[0]
        folder = cleanup.enter_context(_folder())
        procs = cleanup.enter_context(processes())
        port = free_port()
        procs.append(spawn(redis_command(port, folder)))
        await wait_port(port, procs[-1])
        redis_url = f"redis://127.0.0.1:{port}/0"
        env = {"NOTIFIER_BROKER_URL": redis_url, "NOTIFIER_REALTIME_URL": redis_url}
        async with StackRunner(workers=workers, redis_url=url, env=env) as stack:
            return await _measure(
                stack, redis_url, hosts, keyspace, followers, workers, repeats, burst, say
            )
    raise AssertionError("unreachable")  # ExitStack does not swallow exceptions


async def _measure(
    stack: Any,
    redis_url: str,
    hosts: str,
    keyspace: str,
    followers: int,
    workers: int,
    repeats: int,
    burst: int,
    say: Progress,
) -> CassandraFanoutResult:
    storage = CassandraStorage.from_url(cassandra_node.storage_url(hosts, keyspace), PREFIX)
    settings = FanoutSettings()
    actors = FanoutActors(make_broker(settings, redis_url), settings)
    users = [f"u{i:07d}" for i in range(followers)]
    mine: list[float] = []
    seconds: list[float] = []
    raw: list[float] = []
    worker_cpu: list[float] = []
    raw_cpu: list[float] = []
    try:
        say(f"cassandra fanout: {followers:,} followers, bursts of {burst} activities")
        for start in range(0, followers, 100):
            await asyncio.gather(*(storage.follow(u, ["star"]) for u in users[start : start + 100]))
        async with (
            httpx.AsyncClient(base_url=stack.http_url, timeout=120) as http,
            WriteWatch(redis_url, PREFIX, GROUP) as watch,
        ):
            fan_out = Burst(http, stack.headers, watch, actors, followers,
                            lambda n: {"actor": "star", "verb": "post", "object": f"p{n}"},
                            seconds=1800)  # fmt: skip

            await fan_out(1)  # warm-up: connections made, statements prepared
            for n in range(repeats):
                work = sum(cpu_seconds(w.pid) for w in stack.workers)
                elapsed = await fan_out(burst)
                worked = sum(cpu_seconds(w.pid) for w in stack.workers) - work
                writes = burst * followers
                mine.append(writes / elapsed)
                seconds.append(elapsed)
                worker_cpu.append(worked / writes * 1e6)
                ns = f"raw{uuid.uuid4().hex[:8]}"
                rows = [
                    (ns, f"{GROUP}:{user}", f"{time.time_ns() // 1000:014x}{a:012x}")
                    for a in range(burst)
                    for user in users
                ]
                rate, cpu = await asyncio.to_thread(raw_inserts, hosts, keyspace, rows)
                raw.append(rate)
                raw_cpu.append(cpu)
                say(f"cassandra fanout {n + 1}/{repeats}: notifier {mine[-1]:,.0f}/s "
                    f"({elapsed:.1f} s, workers {worker_cpu[-1]:.0f} µs CPU/write), raw driver "
                    f"{rate:,.0f}/s ({cpu:.0f} µs CPU/row)")  # fmt: skip
        await _check_timelines(storage, stack.config_path, users, 1 + repeats * burst)
    finally:
        actors.broker.close()
        await storage.close()
    return CassandraFanoutResult(
        followers=followers,
        workers=workers,
        burst=burst,
        notifier=statistics.median(mine),
        raw=statistics.median(raw),
        notifier_seconds=statistics.median(seconds),
        worker_cpu_us=statistics.median(worker_cpu),
        raw_cpu_us=statistics.median(raw_cpu),
        runs=mine,
        raw_runs=raw,
    )


async def _check_timelines(
    storage: CassandraStorage, config_path: Any, users: list[str], expected: int
) -> None:
    """Every sampled follower's timeline holds every activity posted, exactly once: the
    figures count real writes."""
    feed = Config.load(config_path, env={}).feeds[GROUP]
    for user in users[:: max(1, len(users) // 20)]:
        found = await storage.count(feed, user)
        if found != min(expected, feed.max_length):
            raise RuntimeError(f"{user}'s timeline holds {found} ids, expected {expected}")


def table(results: list[CassandraFanoutResult]) -> str:
    """One row per configuration: medians over repetitions, and the ratio."""
    rows = [
        f"{'cassandra fanout':<18} {'workers':>7} {'burst':>5} {'notifier/s':>11} "
        f"{'runs (min-max)':>15} {'s/burst':>8} {'raw driver/s':>13} {'ratio':>6} "
        f"{'worker µs/w':>11} {'raw µs/row':>10}"
    ]
    for r in results:
        spread = f"{min(r.runs):,.0f}-{max(r.runs):,.0f}" if r.runs else "-"
        rows.append(
            f"{'flat ' + format(r.followers, ','):<18} {r.workers:>7} {r.burst:>5} "
            f"{r.notifier:>11,.0f} {spread:>15} {r.notifier_seconds:>8.1f} {r.raw:>13,.0f} "
            f"{r.ratio:>6.2f} {r.worker_cpu_us:>11.0f} {r.raw_cpu_us:>10.0f}"
        )
    rows.append(
        "follower-feed writes per second (flat timelines, one Cassandra node), medians of "
        f"{len(results[0].runs) if results else 0} repetitions alternating with the raw driver "
        "(prepared INSERT of the same rows, execute_concurrent_with_args, one process); "
        "µs/w: CPU per write"
    )
    return "\n".join(rows)
