"""Dead-lettered fanout jobs: find them with what an operator needs to judge them, then send
them back with fresh retries or discard them.

A job is dead-lettered when it fails ``max_retries`` times more after its first run (or at
once when its arguments do not decode). dramatiq keeps it for ``dead_letter_ttl_s`` (7 days
by default): on the Redis broker in a sorted set per queue (``{namespace}:{queue}.XQ``, the
score being when it died) beside a hash of the messages (``….XQ.msgs``); on the in-process
broker in a list per queue.

The functions are synchronous: they use the broker's own (synchronous) Redis client, two
round trips per queue to read, one pipeline per selection to act. Dead letters are rare and
each is a job of at most a chunk's users, so a call is cheap, but it is network I/O: from a
coroutine, call them through ``asyncio.to_thread``. ``notifier deadletters`` is their CLI.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.errors import DecodeError

if TYPE_CHECKING:  # broker.py re-exports this module: nothing of the fanout at run time
    from notifier.fanout.actors import FanoutActors

log = logging.getLogger(__name__)

#: Longest failure reason kept (the last line of a traceback can quote a whole value).
_REASON_CHARS = 300


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered job: what it was, when it died and why."""

    id: str
    """dramatiq's message id (stable across the job's retries and requeues); for an entry that
    does not decode, the broker's own id of it."""
    queue: str
    job: str
    """The dramatiq actor that ran it: ``notifier.fanout.high``, ``notifier.chunk.low``…"""
    dead_at: float | None
    """When it was dead-lettered (epoch seconds), if the broker says."""
    retries: int
    """Retries it had before it died: its runs minus one."""
    reason: str
    """The last line of a failure's traceback (``ConnectionError: …``), or what is known. On
    Redis it is the run before the last one's (the broker keeps the message as enqueued for
    its last run); the worker's log has every failure."""
    op: str | None = None
    actor: str | None = None
    """The user whose activity the job fans out."""
    activity_ids: tuple[str, ...] = ()
    users: int | None = None
    """How many followers a chunk job writes to (None for a fanout job)."""
    message: dramatiq.Message[Any] | None = field(default=None, repr=False)
    """The message itself; None when it does not decode (it can only be discarded)."""
    key: str = field(default="", repr=False)
    """Where the Redis broker keeps it: the queue's dead-letter set ("" in memory)."""
    redis_id: bytes = field(default=b"", repr=False)

    def line(self, now: float | None = None) -> str:
        """One line for a terminal: id, queue, job, age, what it was, and why it failed."""
        now = time.time() if now is None else now
        age = "?" if self.dead_at is None else _duration(now - self.dead_at)
        ids = ",".join(self.activity_ids[:3]) + ("…" if len(self.activity_ids) > 3 else "")
        parts = [self.id, f"queue={self.queue}", f"job={self.job}", f"age={age}"]
        parts += [f"op={self.op}", f"actor={self.actor}", f"activities={ids or '-'}"]
        if self.users is not None:
            parts.append(f"users={self.users}")
        parts += [f"retries={self.retries}", f"reason={self.reason}"]
        return "  ".join(parts)


def find(actors: FanoutActors, ids: Collection[str] | None = None) -> list[DeadLetter]:
    """The dead letters of ``actors``' queues (those with an id in ``ids``, when given),
    oldest first within a queue. TypeError for a broker that keeps none."""
    broker = actors.broker
    if isinstance(broker, StubBroker):
        found = [_from_proxy(proxy) for proxy in list(broker.dead_letters)]
    elif isinstance(broker, RedisBroker):
        found = _from_redis(broker, actors.all_queues)
    else:
        raise TypeError(f"no dead letters to read from a {type(broker).__name__}")
    return found if ids is None else [letter for letter in found if letter.id in ids]


def requeue(actors: FanoutActors, ids: Collection[str] | None = None) -> list[DeadLetter]:
    """Send the dead letters with these ``ids`` (all when None) back to their queues with
    fresh retries, and delete them; returns those sent. Entries that do not decode are left.

    Each job is enqueued before its dead letter is deleted: a crash in between leaves a
    duplicate (harmless, jobs are idempotent), never a loss.
    """
    broker = actors.broker
    sent = []
    for letter in find(actors, ids):
        if letter.message is None:
            log.warning("dead letter %s does not decode: not requeued", letter.id)
            continue
        fresh = letter.message.copy(options={"retries": 0})
        for stale in ("traceback", "requeue_timestamp", "eta", "redis_message_id"):
            fresh.options.pop(stale, None)
        broker.enqueue(fresh)
        _delete(broker, [letter])
        sent.append(letter)
    if sent:
        log.warning("requeued %d dead-lettered fanout job(s): %s", len(sent), _ids(sent))
    return sent


def discard(actors: FanoutActors, ids: Collection[str] | None = None) -> list[DeadLetter]:
    """Delete the dead letters with these ``ids`` (all when None) for good; returns them."""
    gone = find(actors, ids)
    _delete(actors.broker, gone)
    if gone:
        log.warning("discarded %d dead-lettered fanout job(s): %s", len(gone), _ids(gone))
    return gone


def _from_redis(broker: RedisBroker, queues: Collection[str]) -> list[DeadLetter]:
    client = broker.client
    found = []
    for queue in queues:
        key = f"{broker.namespace}:{queue}.XQ"
        scored = cast(list[tuple[bytes, float]], client.zrange(key, 0, -1, withscores=True))
        if not scored:
            continue
        bodies = cast(list[bytes | None], client.hmget(f"{key}.msgs", [i for i, _ in scored]))
        for (redis_id, score), data in zip(scored, bodies, strict=True):
            if data is None:  # expired by dramatiq's maintenance between the two calls
                continue
            dead_at = score / 1000
            try:
                message = dramatiq.Message.decode(data)
            except DecodeError as exc:
                found.append(DeadLetter(redis_id.decode(), queue, "?", dead_at, 0,
                                        f"does not decode: {exc}", key=key,
                                        redis_id=redis_id))  # fmt: skip
                continue
            found.append(_letter(message, dead_at, key=key, redis_id=redis_id))
    return found


def _from_proxy(proxy: MessageProxy) -> DeadLetter:
    message: dramatiq.Message[Any] = proxy._message
    stamp = message.options.get("requeue_timestamp")  # set by Retries at the last failure
    letter = _letter(message, stamp / 1000 if stamp else None)
    if message.options.get("traceback"):
        # Retries counted the last failure in place, where Redis keeps the message as it
        # was enqueued for its last run: report retries as Redis does (runs minus one).
        return replace(letter, retries=max(0, letter.retries - 1))
    exc = proxy._exception  # refused before any retry: only the exception says why
    if exc is not None:
        letter = replace(letter, reason=f"{type(exc).__name__}: {exc}"[:_REASON_CHARS])
    return letter


def _letter(
    message: dramatiq.Message[Any], dead_at: float | None, *, key: str = "", redis_id: bytes = b""
) -> DeadLetter:
    job = message.args[0] if message.args and isinstance(message.args[0], dict) else {}
    users = job.get("users")
    return DeadLetter(
        id=message.message_id,
        queue=message.queue_name,
        job=message.actor_name,
        dead_at=dead_at,
        retries=int(message.options.get("retries", 0)),
        reason=_reason(message.options.get("traceback")),
        op=job.get("op"),
        actor=job.get("actor"),
        activity_ids=tuple(str(i) for i in job.get("activity_ids") or ()),
        users=len(users) if isinstance(users, list) else None,
        message=message,
        key=key,
        redis_id=redis_id,
    )


def _reason(traceback: object) -> str:
    """The last line of a traceback: the exception and its message."""
    lines = [line.strip() for line in str(traceback or "").splitlines() if line.strip()]
    if not lines:
        return "no traceback kept (refused before any retry)"
    return lines[-1][:_REASON_CHARS]


def _delete(broker: dramatiq.Broker, letters: Collection[DeadLetter]) -> None:
    if isinstance(broker, StubBroker):
        gone = {id(letter.message) for letter in letters}
        for queue_letters in broker.dead_letters_by_queue.values():
            for proxy in [p for p in queue_letters if id(p._message) in gone]:
                queue_letters.remove(proxy)  # in place: the consumers hold this very list
        return
    if isinstance(broker, RedisBroker) and letters:
        pipe = broker.client.pipeline(transaction=True)
        for letter in letters:
            pipe.zrem(letter.key, letter.redis_id)
            pipe.hdel(f"{letter.key}.msgs", letter.redis_id)
        pipe.execute()


def _ids(letters: Collection[DeadLetter]) -> str:
    shown = [letter.id for letter in list(letters)[:5]]
    return ",".join(shown) + ("…" if len(letters) > 5 else "")


def _duration(seconds: float) -> str:
    """``42s``, ``3m12s``, ``5h03m``, ``2d04h``."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"
