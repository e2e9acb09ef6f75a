"""Fanout fixtures: a manager per backend, and real ``notifier worker`` processes for Redis.

Memory: the in-process broker and worker threads, as ``open_manager`` sets them up.
Redis: the test process only enqueues (``open_manager`` on a Redis broker); jobs run in worker
OS processes started with ``python -m notifier.fanout.cli worker``, so a test can SIGKILL one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from notifier.config import Config
from notifier.fanout.actors import FanoutActors
from notifier.fanout.broker import IN_PROCESS, make_broker, start_worker
from notifier.fanout.manager import Manager
from notifier.fanout.runtime import open_manager
from notifier.realtime.bus import RecordingBus
from notifier.service import Notifier
from notifier.storage.base import Storage
from notifier.storage.memory import MemoryStorage
from tests.services import broker_for

ROOT = Path(__file__).resolve().parents[2]

FEEDS = """
[feeds.user]
kind = "flat"
max_length = 1000

[feeds.timeline]
kind = "flat"
max_length = 1000
fanout = true

[feeds.digest]
kind = "notification"
max_length = 100
fanout = true
rule = "{{ verb }}:{{ actor }}"

[feeds.notification]
kind = "notification"
max_length = 100
"""

#: Fast retries and a short heartbeat: a killed worker's jobs come back within seconds.
FANOUT = {
    "chunk_size": 200,
    "min_backoff_ms": 50,
    "max_backoff_ms": 500,
    "max_retries": 3,
    "heartbeat_timeout_ms": 2000,
    "sweep_interval_ms": 500,
    "maintenance_chance": 200_000,
    "poll_ms": 50,
    "threads": 4,
    # Failure tests exercise dramatiq's retries: no waiting out "outages" in place.
    "outage_wait_ms": 0,
}


def toml(storage_url: str, prefix: str, fanout: dict[str, Any], feeds: str = FEEDS) -> str:
    lines = [f'[storage]\nurl = "{storage_url}"\nprefix = "{prefix}"\n', feeds, "[fanout]"]
    for key, value in fanout.items():
        lines.append(f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"')
    return "\n".join(lines) + "\n"


def make_config(
    storage_url: str, prefix: str, *, feeds: str = FEEDS, **fanout: Any
) -> tuple[Config, Path]:
    """A config (and the TOML file worker processes read it from)."""
    settings = {**FANOUT, "namespace": f"ns{prefix}", **fanout}
    broker = broker_for(storage_url)
    if broker is not None:  # a cluster's feeds: the broker on the session's one server
        settings.setdefault("broker_url", broker)
    path = Path(tempfile.mkdtemp(prefix="notifier-fanout-")) / "notifier.toml"
    path.write_text(toml(storage_url, prefix, settings, feeds))
    return Config.load(path, env={}), path


async def wait_until(
    condition: Callable[[], Awaitable[bool]], within: float = 60, every: float = 0.02
) -> None:
    """Poll ``condition`` until true; fail with a clear message after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(every)


class WorkerPool:
    """``notifier worker`` OS processes on one config, each killable on its own."""

    def __init__(
        self, config_path: Path, threads: int = 4, env: dict[str, str] | None = None
    ) -> None:
        self.config_path = config_path
        self.threads = threads
        self.env = env or {}
        """Environment variables the workers get besides the test's (minus NOTIFIER_*)."""
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self, count: int = 1) -> list[subprocess.Popen[bytes]]:
        started = []
        for _ in range(count):
            log = self.config_path.with_name(f"worker-{len(self.logs)}.log")
            self.logs.append(log)
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "notifier.fanout.cli",
                        "worker",
                        "--processes",
                        "1",
                        "--threads",
                        str(self.threads),
                        "--config",
                        str(self.config_path),
                    ],
                    cwd=ROOT,
                    env={
                        **{k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")},
                        **self.env,
                    },
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            self.procs.append(proc)
            started.append(proc)
        return started

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def output(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')}" for log in self.logs)


@dataclass
class Harness:
    """One backend's manager (the producing side) plus what tests need to look at feeds."""

    backend: str
    config: Config
    manager: Manager
    bus: RecordingBus | None = None
    pool: WorkerPool | None = None
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def storage(self) -> Storage:
        return self.manager.storage

    @property
    def actors(self) -> FanoutActors:
        dispatcher = self.manager.dispatcher
        assert isinstance(dispatcher, FanoutActors)
        return dispatcher

    def app(self) -> Notifier:
        return Notifier(self.config, self.storage)

    def user(self, name: str) -> str:
        """A user id unique to the running test (Redis harnesses are shared by a module)."""
        return f"{self.tag}-{name}"

    async def follow_all(self, followers: Sequence[str], target: str) -> None:
        limit = asyncio.Semaphore(64)

        async def follow(user: str) -> None:
            async with limit:
                await self.manager.follow(user, target, backfill=0)

        await asyncio.gather(*(follow(user) for user in followers))

    async def read_all(self, group: str, users: Sequence[str]) -> dict[str, list[str]]:
        """Every user's newest ids in ``group`` (flat), read concurrently."""
        limit = asyncio.Semaphore(64)
        feed_group = self.config.feeds[group]

        async def read(user: str) -> tuple[str, list[str]]:
            async with limit:
                return user, await self.storage.read_flat(feed_group, user, limit=10)

        return dict(await asyncio.gather(*(read(user) for user in users)))

    async def counts_all(self, group: str, users: Sequence[str]) -> dict[str, tuple[int, int, int]]:
        """(groups, unseen, unread) of every user's notification feed ``group``."""
        limit = asyncio.Semaphore(64)
        feed_group = self.config.feeds[group]

        async def read(user: str) -> tuple[str, tuple[int, int, int]]:
            async with limit:
                counts = await self.storage.counts(feed_group, user)
                size = await self.storage.count(feed_group, user)
                return user, (size, counts.unseen, counts.unread)

        return dict(await asyncio.gather(*(read(user) for user in users)))


async def memory_harness(threads: int = 4, *, start: bool = True, **fanout: Any) -> Harness:
    """The embedded setup; with ``start=False`` jobs queue until ``start_in_process``."""
    config, _ = make_config("memory://", "mem", **fanout)
    bus = RecordingBus()
    if start:
        return Harness("memory", config, open_manager(config, bus=bus, threads=threads), bus=bus)
    actors = FanoutActors(make_broker(config.fanout, IN_PROCESS), config.fanout)
    manager = Manager(config, MemoryStorage(), actors, bus=bus)
    actors.bind(manager)
    return Harness("memory", config, manager, bus=bus)


def start_in_process(harness: Harness, threads: int) -> None:
    """Start the worker threads of a harness made with ``start=False``."""
    harness.actors.worker = start_worker(harness.actors, threads=threads)


async def redis_harness(
    redis_url: str, *, workers: int = 2, threads: int = 4, **fanout: Any
) -> Harness:
    """A fresh key prefix and broker namespace, and ``workers`` worker processes on them."""
    prefix = f"f{uuid.uuid4().hex[:10]}"
    config, path = make_config(redis_url, prefix, **fanout)
    pool = WorkerPool(path, threads=threads)
    if workers:
        pool.start(workers)
    return Harness("redis", config, open_manager(config), pool=pool)


async def close(harness: Harness) -> None:
    await harness.manager.close()
    if harness.pool is not None:
        harness.pool.stop()


@pytest.fixture(scope="module")
def shared_pool(storage_redis_url: str) -> Iterator[tuple[Config, WorkerPool]]:
    """Two worker processes shared by a module's Redis tests (each test uses its own users)."""
    prefix = f"f{uuid.uuid4().hex[:10]}"
    config, path = make_config(storage_redis_url, prefix)
    pool = WorkerPool(path)
    pool.start(2)
    try:
        yield config, pool
    finally:
        pool.stop()


@pytest.fixture(params=["memory", "redis"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """The same scenario on memory (in-process broker) and Redis (worker processes)."""
    if request.param == "memory":
        made = await memory_harness()
    else:
        config, pool = request.getfixturevalue("shared_pool")
        made = Harness("redis", config, open_manager(config), pool=pool)
    try:
        yield made
    finally:
        if _failed(request) and made.pool is not None:
            print(made.pool.output())
        await made.manager.close()


@pytest.fixture
async def pools(request: pytest.FixtureRequest) -> AsyncIterator[list[Harness]]:
    """Harnesses registered here are closed after the test (worker logs shown on failure)."""
    made: list[Harness] = []
    yield made
    for made_harness in made:
        if _failed(request) and made_harness.pool is not None:
            print(made_harness.pool.output())
        await close(made_harness)


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "rep_call", None)
    return bool(report is not None and report.failed)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
