"""Timers: a job that runs at a given time, carried by dramatiq's delayed messages.

A timer is a ``Timer`` message (when it is due, and a ``TimerJob`` saying what to do) sent to
the timer actor with dramatiq's ``delay``. No scheduler or polling loop of notifier's own: the
broker keeps the message and a worker runs it once due. dramatiq's Redis broker hands a
delayed message to a worker at once and the worker holds it in memory until it is due, so a
single delay is capped (``fanout.timer_max_delay_s``): a timer due later runs early, finds
itself not due, and is sent again for the rest of the wait (at most the cap each time).

Delivery is at least once, like every fanout job: a timer can run twice (a worker killed after
running it, a retry after a failure half-way), so every kind's handler must be idempotent.

Adding a kind: a struct tagged with its ``kind``, added to ``TimerJob``, and a branch in
``Manager.run_timer`` (mypy fails on a kind without one)::

    class Wake(msgspec.Struct, tag="wake", tag_field="kind", frozen=True, kw_only=True):
        group: str
        user: str
        group_id: str
        until: datetime

    TimerJob = Expire | Wake
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

import msgspec

_Aware = Annotated[datetime, msgspec.Meta(tz=True)]


class Expire(msgspec.Struct, tag="expire", tag_field="kind", frozen=True, kw_only=True):
    """Take activity ``activity_id`` out of every feed it reached, if it has expired."""

    activity_id: str


class Wake(msgspec.Struct, tag="wake", tag_field="kind", frozen=True, kw_only=True):
    """End the snooze of notification group ``group_id`` in ``user``'s ``group`` feed, if it
    is still snoozed until ``until`` (notifier/inbox.py ``Inbox.wake``)."""

    group: str
    user: str
    group_id: str
    until: _Aware


class Escalate(msgspec.Struct, tag="escalate", tag_field="kind", frozen=True, kw_only=True):
    """Deliver, through webhooks, the groups of ``users``' ``group`` feeds that one write
    changed (to ``activity_ids``), if they are still unseen (or unread) now and unchanged
    since (notifier/delivery/engine.py)."""

    group: str
    users: list[str]
    activity_ids: list[str]


class Digest(msgspec.Struct, tag="digest", tag_field="kind", frozen=True, kw_only=True):
    """Email ``users`` the digest of the window starting at ``window_start``: the groups
    that became due and are still unseen (or unread) (notifier/delivery/engine.py)."""

    users: list[str]
    window_start: _Aware


class Attempt(msgspec.Struct, tag="attempt", tag_field="kind", frozen=True, kw_only=True):
    """Try to send delivery ``delivery_id`` (of ``scope``) once more (a retry after a failed
    attempt, or after the lease of a dead worker's attempt ran out)."""

    scope: str
    delivery_id: str


TimerJob = Expire | Wake | Escalate | Digest | Attempt
"""Every kind of timer job, told apart by ``kind``."""


class Timer(msgspec.Struct, frozen=True, kw_only=True):
    """A timer job and when it is due: the argument of the timer actor's messages."""

    at: _Aware
    job: TimerJob


def encode_timer(timer: Timer) -> dict[str, Any]:
    """The JSON-ready form of a timer, for a dramatiq message argument."""
    encoded: dict[str, Any] = msgspec.to_builtins(timer)
    return encoded


def decode_timer(raw: object) -> Timer:
    """A timer from a message argument; msgspec.ValidationError if it is not one."""
    return msgspec.convert(raw, Timer)


def delay_ms(at: datetime, now: datetime, cap_s: int) -> int:
    """How long to wait before a timer due at ``at`` runs: until then (rounded up, so it never
    runs before ``at`` on this clock), at most ``cap_s`` seconds, never negative."""
    wait = math.ceil((at - now).total_seconds() * 1000)
    return max(0, min(wait, cap_s * 1000))


def is_due(timer: Timer, now: datetime) -> bool:
    """Whether ``timer`` should run at ``now`` (False: its delay was capped, send it again)."""
    return timer.at <= now


def kind(job: TimerJob) -> str:
    """The ``kind`` tag of a timer job (``expire`` …)."""
    return str(job.__struct_config__.tag)


def describe(timer: Timer) -> str:
    """``timer=expire at=… activity_id=…``: the context a log line needs."""
    fields = " ".join(f"{k}={v}" for k, v in msgspec.structs.asdict(timer.job).items())
    return f"timer={kind(timer.job)} at={timer.at.isoformat()} {fields}"
