"""Broker set-up: dramatiq's Redis broker in production, its in-process broker for memory storage.

Both are subclassed for one thing only: the LOW queue's consumer fetches nothing while HIGH
jobs wait (``GatedConsumer``). Both get the same middleware, chosen explicitly rather than
dramatiq's defaults: time limits, retries with exponential backoff then dead-lettering,
``SharedAsyncIO`` (the actors are coroutines run on one event loop per process), and
``FailureLog``, which logs every failure and every dead letter with the job's context so
nothing fails silently.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import dramatiq
import redis
import redis.asyncio as aioredis
from dramatiq.asyncio import EventLoopThread, get_event_loop_thread, set_event_loop_thread
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import current_millis
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import Middleware, Retries, TimeLimit
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from notifier.errors import ConfigError
from notifier.fanout import deadletters
from notifier.fanout.observe import BoardReporter, JobObserver, MetricsExporter
from notifier.fanout.queues import QueueCollector
from notifier.fanout.settings import FanoutSettings
from notifier.storage.redis_client import redis_client, sync_redis_client

if TYPE_CHECKING:
    from notifier.config import Config
    from notifier.fanout.actors import FanoutActors, FanoutHandler

log = logging.getLogger(__name__)

IN_PROCESS = "memory://"


def broker_url_for(config: Config) -> str:
    """The broker a configuration implies; ConfigError for combinations that cannot work.

    Memory storage lives in one process, so its fanout must too (the in-process broker);
    storage on one Redis (or a Sentinel-managed one) defaults to that Redis as the broker;
    Cassandra and Redis Cluster storage need a broker URL (dramatiq's Redis broker does not
    run on a cluster).
    """
    url = config.fanout.broker_url
    scheme = urlsplit(config.storage_url).scheme
    if scheme == "memory":
        if url not in (None, IN_PROCESS):
            raise ConfigError(
                "memory storage lives in one process: its fanout needs the in-process broker "
                "(unset NOTIFIER_BROKER_URL or use a Redis storage url)"
            )
        return IN_PROCESS
    if url is not None:
        return url
    if scheme in ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel"):
        return config.storage_url
    raise ConfigError(
        f"{scheme} storage needs a broker on one Redis: set NOTIFIER_BROKER_URL=redis://… "
        "(or redis+sentinel://…)"
    )


def make_broker(settings: FanoutSettings, url: str) -> dramatiq.Broker:
    """A broker for ``url`` (``memory://`` or ``redis://…``) with notifier's middleware."""
    middleware: list[Middleware] = [
        JobObserver(),  # first: its "after" hooks run last, once Retries has decided
        TimeLimit(time_limit=settings.time_limit_ms),
        Retries(
            max_retries=settings.max_retries,
            min_backoff=settings.min_backoff_ms,
            max_backoff=settings.max_backoff_ms,
        ),
        SharedAsyncIO(),
        FailureLog(),
        Sweeper(settings.sweep_interval_ms),
        BoardReporter(),
    ]
    broker: dramatiq.Broker
    if url == IN_PROCESS:
        broker = PriorityStubBroker(settings, middleware=middleware)
    else:
        broker = PriorityRedisBroker(
            settings,
            url=url,
            middleware=middleware,
            namespace=settings.namespace,
            heartbeat_timeout=settings.heartbeat_timeout_ms,
            dead_message_ttl=settings.dead_letter_ttl_s * 1000,
            maintenance_chance=settings.maintenance_chance,
        )
    if settings.metrics_listen:
        queues = {"high": settings.high_queue, "low": settings.low_queue,
                  "deliveries": settings.delivery_queue}  # fmt: skip
        exporter = MetricsExporter(settings.metrics_listen, QueueCollector(broker, queues))
        broker.add_middleware(exporter)
    # What dramatiq's own CLI does once per process: starts the time-limit watchdog.
    broker.emit_after("process_boot")
    return broker


class GatedConsumer(Consumer):
    """The LOW queue's consumer: it fetches nothing while HIGH jobs wait in the broker.

    dramatiq orders only the jobs a worker already holds; a worker whose HIGH prefetch is full
    (or slow to refill) would otherwise keep taking LOW jobs while HIGH ones queue up. With the
    gate, LOW jobs a worker holds are at most its LOW prefetch while any HIGH job waits.
    """

    def __init__(self, inner: Consumer, high_waiting: Callable[[], bool], pause_s: float) -> None:
        self.inner = inner
        self.high_waiting = high_waiting
        self.pause_s = pause_s

    def __next__(self) -> MessageProxy | None:
        if self.high_waiting():
            time.sleep(self.pause_s)
            return None
        return next(self.inner)

    def ack(self, message: MessageProxy) -> None:
        self.inner.ack(message)

    def nack(self, message: MessageProxy) -> None:
        self.inner.nack(message)

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        self.inner.requeue(messages)

    def close(self) -> None:
        self.inner.close()


#: How long a gated LOW consumer waits before looking at the HIGH queue again.
_GATE_PAUSE_S = 0.01


#: Entries a queue's doorbell keeps: enough to wake every consumer, bounded when none listens.
_BELL_LENGTH = 64
#: How long a consumer whose prefetch is full waits before looking again.
_FULL_PAUSE_S = 0.005


class PriorityRedisBroker(RedisBroker):
    """dramatiq's Redis broker whose LOW queue yields to a waiting HIGH queue, and whose idle
    consumers wake when a job arrives instead of when their poll timer fires.

    dramatiq's Redis consumer polls an idle queue with a growing sleep (up to ``poll_ms``),
    so a fanout waited ~50-100 ms before any worker looked at it. Here every enqueue on a
    queue other than LOW also pushes onto that queue's "doorbell" list, and its idle consumer
    waits on it with ``BLPOP`` (bounded by ``poll_ms``): pick-up latency drops to a round trip
    for active users' chunks. LOW keeps polling, which is what keeps it behind HIGH.
    """

    def __init__(self, settings: FanoutSettings, *, url: str, **options: Any) -> None:
        # One server or a Sentinel-managed primary (a cluster is refused, with the reason).
        client = sync_redis_client(url)
        super().__init__(client=client, **options)  # type: ignore[no-untyped-call]
        self.url = url
        self.high_queue = settings.high_queue
        self.low_queue = settings.low_queue
        self._async: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[aioredis.Redis, AsyncScript]
        ] = weakref.WeakKeyDictionary()

    async def enqueue_async(self, messages: Sequence[dramatiq.Message[Any]]) -> None:
        """``enqueue`` for several messages, from a coroutine: the same Redis script calls
        dramatiq makes (its "dispatch" script, "enqueue" command) and the doorbells, in one
        pipelined round trip on the caller's event loop. The synchronous ``enqueue`` from a
        coroutine needs a thread hop per batch and a round trip per message: it was most of
        what a POST of an activity cost the web process.

        The script is called by its SHA1 alone: redis-py's pipeline would first ask the
        server whether the script exists (``SCRIPT EXISTS``, a round trip of its own, for
        every batch). A server that lost it (restarted, flushed) refuses those calls with
        ``NOSCRIPT`` and enqueues nothing for them; they are sent again once it is loaded."""
        client, dispatch = self._async_client()
        unpack = type(self)._max_unpack_size_val
        if unpack is None:  # read once per process, with a (synchronous) script call
            unpack = await asyncio.to_thread(self._max_unpack_size)
        todo = []
        for original in messages:
            message = original.copy(options={"redis_message_id": str(uuid.uuid4())})
            self.emit_before("enqueue", message, None)
            todo.append(message)
        sent = []
        for attempt in range(2):
            async with client.pipeline(transaction=False) as pipe:
                for message in todo:
                    pipe.evalsha(dispatch.sha, 1, self.namespace,
                                 "enqueue", current_millis(), message.queue_name, self.broker_id,
                                 self.heartbeat_timeout, self.dead_message_ttl,
                                 self._should_do_maintenance("enqueue"), unpack,
                                 message.options["redis_message_id"], message.encode())  # fmt: skip
                    self._ring(pipe, message.queue_name)
                # Each message's reply, then its doorbell's two (none on LOW).
                replies = iter(await pipe.execute(raise_on_error=False))
            lost = []
            for message in todo:
                reply = next(replies)
                if message.queue_name != self.low_queue:
                    for bell in (next(replies), next(replies)):
                        if isinstance(bell, Exception):
                            raise bell
                if isinstance(reply, NoScriptError) and attempt == 0:
                    lost.append(message)
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    sent.append(message)
            if not lost:
                break
            await client.script_load(dispatch.script)
            todo = lost
        for message in sent:
            self.emit_after("enqueue", message, None)

    def _async_client(self) -> tuple[aioredis.Redis, AsyncScript]:
        loop = asyncio.get_running_loop()
        if loop not in self._async:
            client = redis_client(self.url, replicated=True)  # an enqueue outlives a failover
            assert isinstance(client, aioredis.Redis)  # never a cluster: see __init__
            self._async[loop] = (client, client.register_script(self.scripts["dispatch"].script))
        return self._async[loop]

    async def close_async(self) -> None:
        """Close the asyncio client of the running loop, if one was opened."""
        found = self._async.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found[0].aclose()

    def sweep(self) -> None:
        """Beat for this process, and put back on their queues the jobs of workers whose
        last beat is older than the heartbeat timeout: dramatiq's own maintenance pass
        (its dispatch script, run for each queue with maintenance on), on a schedule rather
        than by chance. dramatiq runs it on a random 0.1 % of broker calls, so a killed
        worker's jobs came back minutes late."""
        dispatch = self.scripts["dispatch"]
        unpack = self._max_unpack_size()  # type: ignore[no-untyped-call]
        for queue_name in [*self.queues, *self.delay_queues]:
            dispatch(
                keys=[self.namespace],
                args=["qsize", current_millis(), queue_name, self.broker_id,
                      self.heartbeat_timeout, self.dead_message_ttl, 1, unpack],
            )  # fmt: skip

    def bell(self, queue_name: str) -> str:
        """The doorbell key of a queue."""
        return f"{self.namespace}:{queue_name}.bell"

    def _ring(self, pipe: Any, queue_name: str) -> None:
        """Queue (on ``pipe``, sync or asyncio) the doorbell of a queue that has one."""
        if queue_name != self.low_queue:
            pipe.lpush(self.bell(queue_name), 1)
            pipe.ltrim(self.bell(queue_name), 0, _BELL_LENGTH - 1)

    def enqueue(self, message: Any, *, delay: int | None = None) -> Any:
        enqueued = super().enqueue(message, delay=delay)
        if delay is None and message.queue_name != self.low_queue:
            pipe = self.client.pipeline(transaction=False)
            self._ring(pipe, message.queue_name)
            try:
                pipe.execute()
            except redis.RedisError as exc:
                # The job is queued: a silent doorbell only delays its pick-up to the next
                # poll, while failing here would have the caller enqueue it twice.
                log.warning("doorbell of %s not rung: %r", message.queue_name, exc)
        return enqueued

    def _dispatch(self, command: str) -> Callable[..., Any]:
        """dramatiq's script call for ``command`` (``do_enqueue``, ``do_requeue``, …), whose
        lost connections raise ``BrokerUnavailable``: dramatiq's own consumer code expects
        its ``ConnectionClosed`` there and otherwise takes the "unexpected error" path. That
        path closed the consumer by requeueing over the same dead connection, the error
        escaped, and the delay queue's consumer thread died for the life of the process
        (a Redis restart during deliveries: tests/delivery/test_redis_restart.py)."""
        call = super()._dispatch(command)  # type: ignore[no-untyped-call]

        def guarded(queue_name: str, *args: Any) -> Any:
            try:
                return call(queue_name, *args)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                raise BrokerUnavailable(exc) from exc

        return guarded

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Consumer:
        if queue_name in self.delay_queues:
            self._requeue_orphans(queue_name)
        if queue_name != self.low_queue:
            consumer: Consumer = _BellConsumer(self, queue_name, prefetch, timeout)
            return consumer
        # LOW keeps dramatiq's polling: waking it at once would let LOW chunks slip in
        # whenever the worker has taken the HIGH queue's jobs but not run them yet.
        low: Consumer = super().consume(queue_name, prefetch, timeout)
        return GatedConsumer(low, self._high_waiting, _GATE_PAUSE_S)

    def _high_waiting(self) -> bool:
        try:
            return bool(self.client.llen(f"{self.namespace}:{self.high_queue}"))
        except (redis.ConnectionError, redis.TimeoutError) as exc:  # the consumer restarts
            raise BrokerUnavailable(exc) from exc

    def _requeue_orphans(self, queue_name: str) -> None:
        """Put back on ``queue_name`` (a delay queue) the messages this process fetched from
        it and no longer holds, before a new consumer of it starts.

        dramatiq's consumer thread keeps a delay queue's messages in memory until their eta.
        When its connection fails it drops them (``self.delay_queue = PriorityQueue()`` in
        dramatiq/worker.py) and starts a new consumer, while the messages stay in this
        process's acknowledgement set, which only the sweep of a *dead* process's set puts
        back: every timer it held (a digest, an expiry, a retry's backoff) was lost for as
        long as the process lived. Found by a Redis restart during deliveries
        (tests/delivery/test_redis_restart.py: 40 digest timers stranded). A new consumer
        of a delay queue holds nothing yet (dramatiq's consumer thread hands back what it
        held before it closes one), so every message in this process's set for the queue
        is such an orphan."""
        acks = f"{self.namespace}:__acks__.{self.broker_id}.{queue_name}"
        try:
            found = self.client.smembers(acks)
            orphans = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in found)
            if orphans:
                log.warning("requeueing %d delayed job(s) of %s", len(orphans), queue_name)
                self._dispatch("requeue")(queue_name, *orphans)
        except BrokerUnavailable:
            raise
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerUnavailable(exc) from exc


class BrokerUnavailable(ConnectionClosed, redis.ConnectionError):
    """The broker's Redis did not answer a dramatiq script call. Both dramatiq's type (its
    consumer threads restart on it and its acknowledgements wait for the connection to
    come back) and redis-py's (what notifier's own outage handling catches)."""

    def __init__(self, cause: BaseException) -> None:
        redis.ConnectionError.__init__(self, str(cause))
        self.message = str(cause)


class _BellConsumer(_RedisConsumer):
    """dramatiq's Redis consumer, waiting on the queue's doorbell when it finds nothing."""

    def __init__(self, broker: PriorityRedisBroker, queue_name: str, prefetch: int,
                 timeout: int) -> None:  # fmt: skip
        # dramatiq's own backoff is capped at 1 ms: the doorbell wait below replaces it.
        super().__init__(broker, queue_name, prefetch, 1)  # type: ignore[no-untyped-call]
        self.bell = broker.bell(queue_name)
        self.wait_s = max(timeout, 10) / 1000

    def __next__(self) -> MessageProxy | None:
        # Whether the prefetch is full is read *before* dramatiq decides whether to fetch: read
        # after, an acknowledgement in between made a full consumer (which fetched nothing)
        # look like one that found the queue empty, and it waited out the doorbell with
        # thousands of jobs queued (found by ``notifier bench webhooks``: stalls of 100 ms).
        full = self.outstanding_message_count >= self.prefetch
        message = super().__next__()  # type: ignore[no-untyped-call]
        if message is not None:
            return cast(MessageProxy, message)
        if full:
            time.sleep(_FULL_PAUSE_S)  # busy: our own jobs free the slots, not new arrivals
            return None
        try:
            self.broker.client.blpop([self.bell], timeout=self.wait_s)
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]
        return None


class PriorityStubBroker(StubBroker):
    """dramatiq's in-process broker whose LOW queue yields to a waiting HIGH queue."""

    def __init__(self, settings: FanoutSettings, **options: Any) -> None:
        super().__init__(**options)
        self.high_queue = settings.high_queue
        self.low_queue = settings.low_queue

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 100) -> Consumer:
        consumer = super().consume(queue_name, prefetch, timeout)
        if queue_name != self.low_queue:
            return consumer
        high = self.queues[self.high_queue]
        return GatedConsumer(consumer, lambda: high.qsize() > 0, _GATE_PAUSE_S)


def _job_context(message: Any) -> str:
    """``actor=… op=… activities=… users=…`` (a timer: ``at=… kind=… …``) from a message,
    however malformed it is."""
    job = message.args[0] if message.args and isinstance(message.args[0], dict) else {}
    parts = [
        f"message={message.message_id}",
        f"queue={message.queue_name}",
        f"job={message.actor_name}",
    ]
    timer = job.get("job")
    if isinstance(timer, dict):  # a timer: {"at": …, "job": {"kind": …, …}}
        parts += [f"at={job.get('at')}", *(f"{k}={v}" for k, v in timer.items())]
    else:
        ids = job.get("activity_ids") or []
        parts += [
            f"op={job.get('op')}",
            f"actor={job.get('actor')}",
            f"activities={','.join(map(str, ids[:3]))}{'…' if len(ids) > 3 else ''}",
        ]
        if job.get("users") is not None:
            parts.append(f"users={len(job['users'])}")
        if job.get("after"):
            parts.append(f"after={job['after']}")
    parts.append(f"retries={message.options.get('retries', 0)}")
    return " ".join(parts)


class SharedAsyncIO(Middleware):
    """dramatiq's AsyncIO middleware, reference-counted.

    The actors' event loop thread is a process-wide global in dramatiq; its own middleware
    stops it when *any* worker shuts down, which breaks a second in-process worker (two
    embedded managers in one process, as tests and multi-app servers have). Here the loop
    starts with the first worker and stops with the last.
    """

    _lock = threading.Lock()
    _users = 0

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        with SharedAsyncIO._lock:
            if SharedAsyncIO._users == 0 or get_event_loop_thread() is None:
                thread = EventLoopThread(log)
                # A daemon, unlike dramatiq's: a process that embeds an in-process worker
                # and never closes it (a script, a test module) must still be able to exit.
                thread.daemon = True
                thread.start(timeout=1.0)
                set_event_loop_thread(thread)
            SharedAsyncIO._users += 1

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        with SharedAsyncIO._lock:
            SharedAsyncIO._users -= 1
            thread = get_event_loop_thread()
            if SharedAsyncIO._users == 0 and thread is not None:
                thread.stop()  # type: ignore[no-untyped-call]
                thread.join()
                set_event_loop_thread(None)


class Sweeper(Middleware):
    """In a worker process: ``PriorityRedisBroker.sweep`` at boot and every ``interval_ms``
    from a thread of its own, so the process beats even while every consumer is busy, and
    a dead worker's jobs come back within the heartbeat timeout and one interval."""

    def __init__(self, interval_ms: int) -> None:
        self.interval_s = interval_ms / 1000
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if not isinstance(broker, PriorityRedisBroker):
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(broker,), name="notifier-sweeper", daemon=True
        )
        self._thread.start()

    def _run(self, broker: PriorityRedisBroker) -> None:
        while True:
            try:
                broker.sweep()
            except redis.RedisError as exc:  # the broker's Redis is down: next time
                log.warning("broker sweep failed: %r", exc)
            if self._stop.wait(self.interval_s):
                return

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # After, not before: a stopping worker finishes the jobs it runs, and while it does
        # it must go on beating, or another worker would take those jobs as a dead one's.
        # (dramatiq's consumers beat too while the threads finish, with every fetch; this
        # keeps the beat from depending on that.)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


class FailureLog(Middleware):
    """Logs failed attempts (warning) and dead-lettered jobs (error) with the job's context."""

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if exception is not None:
            log.warning(
                "fanout job failed %s error=%s: %s",
                _job_context(message),
                type(exception).__name__,
                exception,
            )

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        log.error(
            "fanout job dead-lettered %s: kept for `notifier deadletters`", _job_context(message)
        )


class ManagerLifecycle(Middleware):
    """Creates the worker process's manager on the worker's event loop, and closes it there.

    Storage clients bind to the loop that first uses them, so the manager is built by a
    coroutine run on the AsyncIO middleware's loop, before the first job can arrive.
    """

    def __init__(self, actors: FanoutActors, factory: Callable[[], Awaitable[Any]]) -> None:
        self.actors = actors
        self.factory = factory
        self.manager: Any = None

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        loop = get_event_loop_thread()
        if loop is None:
            raise RuntimeError("SharedAsyncIO must come before ManagerLifecycle")
        self.manager = loop.run_coroutine(self.factory())
        handler: FanoutHandler = self.manager
        self.actors.bind(handler)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        loop = get_event_loop_thread()
        if self.manager is not None and loop is not None:
            loop.run_coroutine(self.manager.close())


def start_worker(
    actors: FanoutActors, *, threads: int, queues: Sequence[str] | None = None
) -> dramatiq.Worker:
    """Start consuming ``actors``' queues on ``threads`` threads in this process."""
    worker = dramatiq.Worker(
        actors.broker,
        queues=set(queues) if queues else None,
        worker_threads=threads,
        worker_timeout=actors.settings.poll_ms,
    )
    worker.start()
    return worker


# -- dead letters: notifier/fanout/deadletters.py; these two stay for existing callers ----------
def dead_letters(actors: FanoutActors) -> list[dramatiq.Message[Any]]:
    """Jobs that exhausted their retries, oldest first per queue (``deadletters.find`` has
    what an operator needs to judge them)."""
    return [letter.message for letter in deadletters.find(actors) if letter.message is not None]


def requeue_dead_letters(actors: FanoutActors) -> int:
    """Send every dead-lettered job back to its queue with fresh retries; returns how many
    (``deadletters.requeue``)."""
    return len(deadletters.requeue(actors))
