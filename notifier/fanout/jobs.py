"""The messages fanout sends through the broker, as typed structs.

A job carries everything its worker needs so that running it needs no other message: the
entries are rendered (group keys included) once per activity when the activity is added, never
per follower. Jobs are encoded with ``msgspec.to_builtins`` for dramatiq's JSON encoder and
decoded with ``msgspec.convert``, so a malformed message fails loudly at the boundary.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, Literal, Protocol

import msgspec

from notifier.fanout.timers import Timer
from notifier.storage.base import Entry

Op = Literal["add", "remove"]


class Priority(enum.StrEnum):
    """Which queue a job goes to; within a worker HIGH jobs always run before LOW ones."""

    HIGH = "high"
    LOW = "low"


class FanoutJob(msgspec.Struct, frozen=True, kw_only=True):
    """Fan ``activity_ids`` of ``actor`` out to (or back out of) their followers' feeds.

    ``after`` is the follower cursor a continuation resumes from; ``celebrity`` is decided by
    the first step and carried by its continuations.
    """

    op: Op
    actor: str
    activity_ids: list[str]
    entries: dict[str, list[Entry]] = msgspec.field(default_factory=dict)
    """Fanout group name → entries to add (``add`` only)."""
    categories: dict[str, str] = msgspec.field(default_factory=dict)
    """Activity id → its category, for categorised activities (``add`` only): the mute rule
    needs it and entries do not carry it. A job from before it existed has none."""
    to: list[str] = msgspec.field(default_factory=list)
    """The activities' explicit feeds (``remove`` only: cleaned up by the job too)."""
    after: str | None = None
    celebrity: bool | None = None

    @property
    def first_step(self) -> bool:
        """Whether this is the job as enqueued by the manager, not a continuation."""
        return self.after is None and self.celebrity is None


class ChunkJob(msgspec.Struct, frozen=True, kw_only=True):
    """Write (or remove) activities into the fanout feeds of a bounded list of ``users``."""

    op: Op
    actor: str
    activity_ids: list[str]
    users: list[str]
    entries: dict[str, list[Entry]] = msgspec.field(default_factory=dict)
    categories: dict[str, str] = msgspec.field(default_factory=dict)
    """As ``FanoutJob.categories``."""


Job = FanoutJob | ChunkJob


class Dispatcher(Protocol):
    """Where jobs go: dramatiq's broker (``FanoutActors``) in every real setup."""

    async def send(self, jobs: Sequence[tuple[Priority, Job]]) -> None:
        """Enqueue ``jobs`` in order; returns once the broker holds them."""

    async def schedule(self, timers: Sequence[Timer]) -> None:
        """Enqueue ``timers`` to run when each is due; returns once the broker holds them."""

    async def join(self, seconds: float) -> None:
        """Wait until every queued fanout job is done, timers excepted (TimeoutError after
        ``seconds``)."""

    async def close(self) -> None:
        """Stop in-process workers, if any, and release the broker."""


def encode_job(job: Job) -> dict[str, Any]:
    """The JSON-ready form of a job, for a dramatiq message argument."""
    encoded: dict[str, Any] = msgspec.to_builtins(job)
    return encoded


def describe(job: Job) -> str:
    """``op=add actor=ana activities=… users=300``: the context a log line needs."""
    ids = ",".join(job.activity_ids[:3]) + ("…" if len(job.activity_ids) > 3 else "")
    if isinstance(job, ChunkJob):
        return f"op={job.op} actor={job.actor} activities={ids} users={len(job.users)}"
    return f"op={job.op} actor={job.actor} activities={ids} after={job.after}"
