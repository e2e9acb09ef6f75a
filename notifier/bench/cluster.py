"""Fanout on a Redis Cluster: what Redis spends per feed-write, and how evenly the primaries
share keys and work, next to one Redis doing the same writes in the same run.

This machine's cores are shared by every process of the run, so throughput cannot grow with
primaries here; what makes it grow elsewhere is that the cluster spends no more Redis CPU per
feed-write than one server (each primary then does 1/N of the work) and that work and keys
spread evenly. So the figures are Redis CPU (``used_cpu_user + used_cpu_sys`` of ``INFO
cpu``, summed over the storage's servers) per follower-feed write, in both topologies, and
the max / mean of keys (``DBSIZE``) and of CPU across the cluster's primaries.

Both topologies do the same work on the measured servers: feeds and the realtime bus there
(``NOTIFIER_REALTIME_URL`` is the storage's URL), the fanout broker on a separate
redis-server whose CPU is not counted.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from notifier.bench.fanout import NOTIFICATION_FEEDS
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
from notifier.storage.redis import RedisStorage

Progress = Callable[[str], None]


@dataclass
class TopologyFigures:
    """One topology's repetitions."""

    name: str
    servers: list[str]
    cpu_us_per_write: list[float] = field(default_factory=list)
    writes_per_s: list[float] = field(default_factory=list)
    keys: list[int] = field(default_factory=list)
    """Keys per server at the end."""
    cpu_s: list[float] = field(default_factory=list)
    """Redis CPU seconds per server over the measured bursts."""
    worker_us_per_write: list[float] = field(default_factory=list)
    """CPU of the ``notifier worker`` processes per feed-write."""
    bytes_per_entry: float = 0.0
    """Redis memory (``used_memory``, all servers) per feed entry written by the bursts."""

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_us_per_write)

    @property
    def key_spread(self) -> float:
        return max(self.keys) / statistics.mean(self.keys)

    @property
    def cpu_spread(self) -> float:
        return max(self.cpu_s) / statistics.mean(self.cpu_s)


@dataclass
class ClusterResult:
    feeds: str
    followers: int
    burst: int
    single: TopologyFigures
    cluster: TopologyFigures

    @property
    def cpu_ratio(self) -> float:
        return self.cluster.cpu / self.single.cpu


def _cpu(port: int) -> float:
    info = redis.Redis(port=port).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _dbsize(port: int) -> int:
    return int(redis.Redis(port=port).dbsize())


def _memory(port: int) -> int:
    return int(redis.Redis(port=port).info("memory")["used_memory"])


def start_cluster(folder: Path, procs: list[subprocess.Popen[bytes]], primaries: int) -> list[int]:
    """``primaries`` redis-servers with cluster mode on, every slot assigned evenly."""
    ports: list[int] = []
    while len(ports) < primaries:
        port = free_port()
        if port < 55_000 and port not in ports:  # its bus port (+10000) must exist
            ports.append(port)
    for port in ports:
        node = folder / f"node{port}"
        node.mkdir()
        procs.append(spawn([*redis_command(port, node), "--cluster-enabled", "yes"]))
    cli = shutil.which("redis-cli") or "redis-cli"
    for port in ports:
        deadline = time.monotonic() + 30
        while subprocess.run([cli, "-p", str(port), "ping"], capture_output=True).returncode:
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server on {port} did not start")
            time.sleep(0.05)
    addresses = [f"127.0.0.1:{p}" for p in ports]
    subprocess.run([cli, "--cluster", "create", *addresses, "--cluster-yes"],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    for port in ports:
        while (
            b"cluster_state:ok"
            not in subprocess.run(
                [cli, "-p", str(port), "cluster", "info"], capture_output=True
            ).stdout
        ):
            time.sleep(0.05)
    return ports


async def _measure(
    figures: TopologyFigures,
    storage_url: str,
    ports: list[int],
    broker_url: str,
    *,
    followers: int,
    feeds: str,
    burst: int,
    repeats: int,
    workers: int,
    say: Progress,
) -> None:
    toml = NOTIFICATION_FEEDS if feeds == "notification" else ""
    group = "inbox" if feeds == "notification" else "timeline"
    env = {"NOTIFIER_BROKER_URL": broker_url, "NOTIFIER_REALTIME_URL": storage_url}
    async with StackRunner(workers=workers, redis_url=storage_url, toml=toml, env=env) as stack:
        storage = RedisStorage.from_url(storage_url, prefix="bench")
        settings = FanoutSettings()
        actors = FanoutActors(make_broker(settings, broker_url), settings)
        try:
            users = [f"u{i:07d}" for i in range(followers)]
            for start in range(0, followers, 100):
                await asyncio.gather(
                    *(storage.follow(u, ["star"]) for u in users[start : start + 100])
                )
            async with httpx.AsyncClient(base_url=stack.http_url, timeout=120) as http:
                posted = 0

                async def fan_out(activities: int) -> float:
                    nonlocal posted
                    started = time.perf_counter()
                    await asyncio.gather(*(
                        http.post("/v1/activities", headers=stack.headers, json={
                            "actor": "star", "verb": "post", "object": f"p{posted + n}"})
                        for n in range(activities)
                    ))  # fmt: skip
                    posted += activities
                    await actors.join(600)
                    return time.perf_counter() - started

                await fan_out(1)  # warm-up: connections, scripts loaded on every node
                before = [_cpu(p) for p in ports]
                memory = sum(_memory(p) for p in ports)
                for n in range(repeats):
                    at = [_cpu(p) for p in ports]
                    work = sum(cpu_seconds(w.pid) for w in stack.workers)
                    elapsed = await fan_out(burst)
                    spent = sum(_cpu(p) for p in ports) - sum(at)
                    writes = burst * followers
                    worked = sum(cpu_seconds(w.pid) for w in stack.workers) - work
                    figures.cpu_us_per_write.append(spent / writes * 1e6)
                    figures.worker_us_per_write.append(worked / writes * 1e6)
                    figures.writes_per_s.append(writes / elapsed)
                    say(f"{figures.name} {n + 1}/{repeats}: {spent / writes * 1e6:.2f} µs "
                        f"Redis CPU per feed-write, {writes / elapsed:,.0f} writes/s")  # fmt: skip
                figures.cpu_s = [_cpu(p) - b for p, b in zip(ports, before, strict=True)]
                figures.keys = [_dbsize(p) for p in ports]
                grown = sum(_memory(p) for p in ports) - memory
                figures.bytes_per_entry = grown / (repeats * burst * followers)
                # Every follower got every activity: the figures count real writes.
                feed = Config.load(stack.config_path, env={}).feeds[group]
                for user in users[:: max(1, followers // 20)]:
                    if await storage.count(feed, user) == 0:
                        raise RuntimeError(f"{figures.name}: {user}'s {group} feed is empty")
        finally:
            actors.broker.close()
            await storage.close()


async def run(
    *,
    followers: int = 10_000,
    feeds: str = "flat",
    primaries: int = 3,
    burst: int = 10,
    repeats: int = 3,
    workers: int = 2,
    progress: Progress | None = None,
) -> ClusterResult:
    say = progress or (lambda _: None)
    with ExitStack() as cleanup:
        folder = cleanup.enter_context(_folder())
        procs = cleanup.enter_context(processes())
        broker_port, single_port = free_port(), free_port()
        for port in (broker_port, single_port):
            (folder / str(port)).mkdir()
            procs.append(spawn(redis_command(port, folder / str(port))))
            await wait_port(port, procs[-1])
        ports = start_cluster(folder, procs, primaries)
        broker = f"redis://127.0.0.1:{broker_port}/0"
        single = TopologyFigures("one Redis", [f"127.0.0.1:{single_port}"])
        cluster = TopologyFigures(f"{primaries}-primary cluster", [f"127.0.0.1:{p}" for p in ports])
        common = dict(followers=followers, feeds=feeds, burst=burst, repeats=repeats,
                      workers=workers, say=say)  # fmt: skip
        say(f"cluster/{feeds}: {followers:,} followers, bursts of {burst}, one Redis first")
        await _measure(single, f"redis://127.0.0.1:{single_port}/0", [single_port], broker,
                       **common)  # type: ignore[arg-type]  # fmt: skip
        url = "redis+cluster://" + ",".join(cluster.servers)
        await _measure(cluster, url, ports, broker, **common)  # type: ignore[arg-type]
    return ClusterResult(feeds, followers, burst, single, cluster)


def table(result: ClusterResult) -> str:
    rows = [
        f"fanout on a Redis Cluster: {result.feeds} feeds, {result.followers:,} followers, "
        f"bursts of {result.burst} activities",
        f"{'topology':<22} {'Redis CPU/write':>16} {'worker CPU/write':>17} {'writes/s':>10} "
        f"{'B/entry':>8} {'keys max/mean':>14} {'CPU max/mean':>13}",
    ]
    for figures in (result.single, result.cluster):
        spread = len(figures.servers) > 1
        rows.append(
            f"{figures.name:<22} {figures.cpu:>13.2f} µs "
            f"{statistics.median(figures.worker_us_per_write):>14.2f} µs "
            f"{statistics.median(figures.writes_per_s):>10,.0f} {figures.bytes_per_entry:>8.0f} "
            f"{format(figures.key_spread, '.3f') if spread else '-':>14} "
            f"{format(figures.cpu_spread, '.3f') if spread else '-':>13}"
        )
    rows.append(
        f"cluster / one Redis, CPU per feed-write: {result.cpu_ratio:.2f} (target <= 1.2); "
        f"spread targets <= 1.15. Keys per primary: {result.cluster.keys}; CPU s per primary: "
        + ", ".join(f"{c:.2f}" for c in result.cluster.cpu_s)
    )
    return "\n".join(rows)
