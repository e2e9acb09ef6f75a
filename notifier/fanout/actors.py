"""The dramatiq actors of fanout, declared on an explicit broker, and the way jobs reach them.

Four thin actors, two per priority: ``fanout`` (page followers into chunks) and ``chunk``
(write one chunk), and a fifth, ``timer``, on a queue of its own for jobs that run at a given
time (``notifier.fanout.timers``). They decode their job and call the handler bound to them
(the ``Manager`` of that process). Actors are declared per ``FanoutActors`` instance on the
broker it is given, never on dramatiq's global broker, so a process can hold a Redis and an
in-process broker side by side and tests can build as many as they like.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import dramatiq
import msgspec
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import current_millis, dq_name
from dramatiq.errors import QueueJoinTimeout

from notifier import metrics
from notifier.errors import is_transient
from notifier.fanout.broker import PriorityRedisBroker
from notifier.fanout.jobs import ChunkJob, FanoutJob, Job, Priority, encode_job
from notifier.fanout.settings import FanoutSettings
from notifier.fanout.timers import (
    Attempt,
    Timer,
    TimerJob,
    decode_timer,
    delay_ms,
    encode_timer,
    is_due,
)

log = logging.getLogger(__name__)

#: Work-queue priorities inside a worker (lower runs first): HIGH jobs always jump LOW ones.
_ACTOR_PRIORITY = {Priority.HIGH: 0, Priority.LOW: 100}
#: Timers run with HIGH jobs: what they do (an expiry) is as visible to users as a HIGH chunk.
_TIMER_PRIORITY = _ACTOR_PRIORITY[Priority.HIGH]


_ActorFn = Callable[[dict[str, Any]], Awaitable[None]]
JobActor = dramatiq.Actor[[dict[str, Any]], None]


class FanoutHandler(Protocol):
    """What the actors call: implemented by ``Manager``."""

    async def run_fanout(self, job: FanoutJob) -> None: ...

    async def run_chunk(self, job: ChunkJob) -> None: ...

    async def run_timer(self, job: TimerJob) -> None: ...


class FanoutActors:
    """The actors declared on one broker; also the manager's ``Dispatcher`` for that broker."""

    def __init__(self, broker: dramatiq.Broker, settings: FanoutSettings) -> None:
        self.broker = broker
        self.settings = settings
        self.queues = {Priority.HIGH: settings.high_queue, Priority.LOW: settings.low_queue}
        self.timer_queue = settings.timer_queue
        self._handler: FanoutHandler | None = None
        self.worker: dramatiq.Worker | None = None
        self.fanout = {
            p: self._declare(self._run_fanout, f"fanout.{p}", self.queues[p], _ACTOR_PRIORITY[p])
            for p in Priority
        }
        self.chunk = {
            p: self._declare(self._run_chunk, f"chunk.{p}", self.queues[p], _ACTOR_PRIORITY[p])
            for p in Priority
        }
        self.timer = self._declare(self._run_timer, "timer", self.timer_queue, _TIMER_PRIORITY)
        self.delivery_queue = settings.delivery_queue
        # Delivery attempts are timers too (retries are delayed), on a queue of their own: a
        # slow webhook receiver then holds up attempts, never fanout or expiry.
        self.deliver = self._declare(
            self._run_timer, "deliver", self.delivery_queue, _TIMER_PRIORITY
        )

    @property
    def all_queues(self) -> list[str]:
        """Every queue these actors consume: HIGH, LOW, the timers' and the deliveries'."""
        return [*self.queues.values(), self.timer_queue, self.delivery_queue]

    def _declare(self, fn: _ActorFn, name: str, queue: str, priority: int) -> JobActor:
        actor: JobActor = dramatiq.Actor(
            fn,
            broker=self.broker,
            actor_name=f"notifier.{name}",
            queue_name=queue,
            priority=priority,
            # A message that does not decode cannot succeed later: dead-letter it at once.
            options={"throws": (msgspec.ValidationError,)},
        )
        return actor

    def bind(self, handler: FanoutHandler) -> None:
        """Route this process's jobs to ``handler`` (the manager living on the worker loop)."""
        self._handler = handler

    def _require(self) -> FanoutHandler:
        if self._handler is None:
            raise RuntimeError("fanout actors received a job before a manager was bound")
        return self._handler

    async def _run_fanout(self, job: dict[str, Any]) -> None:
        fanout = msgspec.convert(job, FanoutJob)
        await self._through_outages(lambda: self._require().run_fanout(fanout))

    async def _run_chunk(self, job: dict[str, Any]) -> None:
        chunk = msgspec.convert(job, ChunkJob)
        await self._through_outages(lambda: self._require().run_chunk(chunk))

    async def _run_timer(self, raw: dict[str, Any]) -> None:
        timer = decode_timer(raw)
        if not is_due(timer, datetime.now(UTC)):
            # Its delay was capped (or another clock ran ahead): wait out the rest.
            await self._through_outages(lambda: self.schedule([timer]))
            return
        await self._through_outages(lambda: self._require().run_timer(timer.job))

    async def _through_outages(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run an (idempotent) job, riding out a storage or broker outage of up to
        ``outage_wait_ms`` in place. Failing instead would hand the job to dramatiq's retry,
        which must re-enqueue it on the very Redis that is down: when that fails too, the
        message can be acknowledged and lost. Past the wait, the job fails and is retried."""
        deadline = time.monotonic() + self.settings.outage_wait_ms / 1000
        delay = 0.05
        while True:
            try:
                await work()
                return
            except Exception as exc:
                if not is_transient(exc):
                    raise
                metrics.count_backend_error("fanout", exc)
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("fanout job waits for the backend (%r); again in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # -- Dispatcher ------------------------------------------------------------------------
    def message(self, priority: Priority, job: Job) -> dramatiq.Message[Any]:
        """The dramatiq message that runs ``job`` on ``priority``'s queue."""
        actors = self.chunk if isinstance(job, ChunkJob) else self.fanout
        message: dramatiq.Message[Any] = actors[priority].message(encode_job(job))
        return message

    async def send(self, jobs: Sequence[tuple[Priority, Job]]) -> None:
        if not jobs:
            return
        messages = [self.message(priority, job) for priority, job in jobs]
        if isinstance(self.broker, StubBroker):
            self._enqueue(messages)
        elif isinstance(self.broker, PriorityRedisBroker):
            await self.broker.enqueue_async(messages)
        else:
            # The Redis broker's client is synchronous: keep its round trips off the loop.
            await asyncio.to_thread(self._enqueue, messages)

    def _enqueue(self, messages: list[dramatiq.Message[Any]]) -> None:
        for message in messages:
            self.broker.enqueue(message)

    async def schedule(self, timers: Sequence[Timer]) -> None:
        """Send ``timers`` to the timer actor, each with dramatiq's ``delay`` until it is due
        (at most ``timer_max_delay_s``: see ``notifier.fanout.timers``)."""
        if not timers:
            return
        now = datetime.now(UTC)
        cap = self.settings.timer_max_delay_s
        delayed = [
            (self._actor_of(t).message(encode_timer(t)), delay_ms(t.at, now, cap)) for t in timers
        ]
        if isinstance(self.broker, StubBroker):
            self._enqueue_delayed(delayed)
        elif isinstance(self.broker, PriorityRedisBroker):
            # One pipelined round trip on this loop for the whole batch (a fanout chunk's
            # escalation timers, a burst of delivery attempts): a delayed message is what
            # dramatiq's own enqueue makes of it, on the queue's delay queue with its eta.
            await self.broker.enqueue_async([
                message if not delay else message.copy(
                    queue_name=dq_name(message.queue_name),
                    options={"eta": current_millis() + delay},
                )
                for message, delay in delayed
            ])  # fmt: skip
        else:
            # dramatiq's enqueue with a delay is synchronous: off the loop, a thread hop per
            # batch (a round trip per timer; timers are one per expiring activity).
            await asyncio.to_thread(self._enqueue_delayed, delayed)

    def _actor_of(self, timer: Timer) -> JobActor:
        return self.deliver if isinstance(timer.job, Attempt) else self.timer

    def _enqueue_delayed(self, delayed: list[tuple[dramatiq.Message[Any], int]]) -> None:
        for message, delay in delayed:
            # Due now: straight onto the queue, not through the delay queue and a worker.
            self.broker.enqueue(message, delay=delay or None)

    async def join(self, seconds: float) -> None:
        await asyncio.to_thread(self._join, seconds)

    def _join(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            for queue in self.queues.values():
                remaining = max(1, int((deadline - time.monotonic()) * 1000))
                try:
                    if isinstance(self.broker, RedisBroker):
                        self.broker.join(queue, timeout=remaining, interval=20)
                    elif isinstance(self.broker, StubBroker):
                        self.broker.join(queue, timeout=remaining, fail_fast=False)
                    else:
                        self.broker.join(queue, timeout=remaining)
                except QueueJoinTimeout:
                    raise TimeoutError(f"fanout queues not drained after {seconds}s") from None
            # A job on one queue may have enqueued onto the other while we waited: only a pass
            # that finds both empty is done.
            if all(self.pending(queue) == 0 for queue in self.queues.values()):
                return

    def pending(self, queue: str) -> int:
        """Jobs enqueued on ``queue`` (or its delay queue) and not yet acknowledged."""
        if isinstance(self.broker, StubBroker):
            return sum(self.broker.queues[name].unfinished_tasks for name in (queue, f"{queue}.DQ"))
        if isinstance(self.broker, RedisBroker):
            size: int = self.broker.do_qsize(queue)
            return size
        raise TypeError(f"cannot count the jobs of a {type(self.broker).__name__}")

    async def close(self) -> None:
        if self.worker is not None:
            worker, self.worker = self.worker, None
            await asyncio.to_thread(worker.stop, self.settings.time_limit_ms)
        if isinstance(self.broker, PriorityRedisBroker):
            await self.broker.close_async()
        self.broker.close()
