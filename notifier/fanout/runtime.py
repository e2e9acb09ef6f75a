"""Wiring: a configuration becomes a broker, its actors, a manager and (where needed) workers.

Two shapes. ``open_manager`` is for the process that *produces* work (the web server, an
import, an app using the Python API): with memory storage it also starts dramatiq worker
threads in this process, so one process works with no servers; otherwise it only enqueues.
``run_worker`` is the body of a ``notifier worker`` process: it consumes the queues until
SIGTERM or SIGINT and then stops gracefully: each thread finishes the job it is running, and
the jobs fetched but not started go back to their queues at once, for other workers
(tests/fanout/test_worker_sigterm.py: none lost, none run twice).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from notifier.checks import backend_findings, log_findings
from notifier.fanout.actors import FanoutActors
from notifier.fanout.broker import (
    IN_PROCESS,
    ManagerLifecycle,
    broker_url_for,
    make_broker,
    start_worker,
)
from notifier.fanout.followers import FollowerLookup
from notifier.fanout.manager import Manager
from notifier.fanout.policy import MemoryPresence, Presence, PriorityPolicy, RedisPresence
from notifier.gcpolicy import settle_heap
from notifier.realtime.bus import Bus
from notifier.storage.base import Storage
from notifier.storage.factory import storage_for
from notifier.storage.redis_client import redis_client

if TYPE_CHECKING:
    from notifier.config import Config

log = logging.getLogger(__name__)


def default_presence(config: Config, storage: Storage) -> Presence:
    """Where "last active" lives, shared by web and worker processes: the storage's Redis,
    else the broker's Redis, else (everything in one process) this process's memory."""
    from notifier.storage.redis import RedisStorage

    if isinstance(storage, RedisStorage):
        return RedisPresence(storage.client, storage.prefix)
    url = broker_url_for(config)
    if url != IN_PROCESS:
        return RedisPresence(redis_client(url), config.key_prefix, owns_client=True)
    return MemoryPresence()


def open_manager(
    config: Config,
    *,
    storage: Storage | None = None,
    bus: Bus | None = None,
    policy: PriorityPolicy | None = None,
    presence: Presence | None = None,
    followers: FollowerLookup | None = None,
    threads: int | None = None,
) -> Manager:
    """A manager for ``config``; with the in-process broker its worker threads are started.

    Call it from the event loop that will use the manager (storage clients bind to it) and
    ``await manager.close()`` at the end. ``storage`` defaults to one opened (and closed)
    here; ``threads`` overrides ``fanout.threads`` for the in-process worker.
    """
    url = broker_url_for(config)
    owns = storage is None
    store = storage or storage_for(config)
    actors = FanoutActors(make_broker(config.fanout, url), config.fanout)
    manager = Manager(
        config,
        store,
        actors,
        bus=bus,
        policy=policy,
        presence=presence or default_presence(config, store),
        followers=followers,
        owns_storage=owns,
    )
    if url == IN_PROCESS:
        actors.bind(manager)
        actors.worker = start_worker(actors, threads=threads or config.fanout.threads)
    return manager


ManagerFactory = Callable[["Config", FanoutActors], Awaitable[Manager]]


async def default_worker_manager(config: Config, actors: FanoutActors) -> Manager:
    """The manager of a worker process: its own storage, publishing on the Redis bus."""
    from notifier.realtime.wiring import open_publisher

    storage = storage_for(config)
    await storage.ping()
    log_findings(await backend_findings(config))
    return Manager(
        config,
        storage,
        actors,
        bus=open_publisher(config),
        presence=default_presence(config, storage),
        owns_storage=True,
        owns_bus=True,
    )


def run_worker(
    config: Config,
    *,
    threads: int | None = None,
    queues: Sequence[str] | None = None,
    factory: ManagerFactory = default_worker_manager,
    stop: threading.Event | None = None,
) -> None:
    """Consume fanout jobs in this process until SIGTERM / SIGINT (or ``stop`` is set).

    ``factory`` builds the manager on the worker's event loop: apps with their own follower
    lookup, policy or bus pass theirs. Raises ConfigError for memory storage, whose fanout
    runs inside the process that holds the data.
    """
    url = broker_url_for(config)
    if url == IN_PROCESS:
        from notifier.errors import ConfigError

        raise ConfigError(
            "notifier worker needs a Redis broker; memory storage runs its fanout in-process"
        )
    actors = FanoutActors(make_broker(config.fanout, url), config.fanout)

    async def build() -> Manager:
        return await factory(config, actors)

    actors.broker.add_middleware(ManagerLifecycle(actors, build))
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    worker = start_worker(actors, threads=threads or config.fanout.threads, queues=queues)
    if threading.current_thread() is threading.main_thread():
        # This process is the worker: its start-up heap (imports, the manager, dramatiq) is
        # never scanned again, and a job's garbage no longer brings full collections that
        # stop every thread mid-fanout (notifier/gcpolicy.py).
        settle_heap()
    log.info(
        "fanout worker ready threads=%d queues=%s",
        worker.worker_threads,
        ",".join(queues or actors.all_queues),
    )
    try:
        while not stop.wait(1.0):
            pass
    finally:
        log.info("fanout worker stopping: finishing the jobs running, giving back the others")
        # dramatiq's stop: the threads finish their jobs (each within the time limit), then
        # the jobs fetched and not started are requeued rather than left for the heartbeat
        # timeout to bring back.
        worker.stop(config.fanout.time_limit_ms)
        log.info("fanout worker stopped")
        actors.broker.close()
