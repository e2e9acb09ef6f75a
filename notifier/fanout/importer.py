"""``notifier import``: bulk-load follows and activities from JSON Lines files.

One JSON object per line, told apart by ``type``::

    {"type": "follow", "user": "bo", "target": "ana"}
    {"type": "activity", "actor": "ana", "verb": "like", "object": "photo:1",
     "time": "2024-05-01T12:00:00Z", "foreign_id": "like:1", "to": ["notification:bo"]}

Lines are read in batches; each batch is written with the manager's batched calls (follows
grouped per user, activities per actor) and then the file offset reached is saved to a state
file, so an interrupted import resumes after the last finished batch. A batch that was cut
short is redone: follows are idempotent, and so are activities that carry a ``time`` (their id
is derived from the time and the line, or from ``foreign_id``). A bad line is reported with its
number and skipped; the import goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from notifier import ids
from notifier.errors import NotifierError
from notifier.fanout.manager import Manager
from notifier.model import Activity, check_user_id, new_activity

#: Follow calls in flight at once (one per user of a batch).
_CONCURRENCY = 32


class FollowLine(msgspec.Struct, tag="follow", tag_field="type", forbid_unknown_fields=True):
    """``user`` follows ``target``."""

    user: str
    target: str


class ActivityLine(msgspec.Struct, tag="activity", tag_field="type", forbid_unknown_fields=True):
    """An activity, with the fields of ``Notifier.activity``."""

    actor: str
    verb: str
    object: str
    target: str | None = None
    time: datetime | None = None
    extra: dict[str, Any] | None = None
    foreign_id: str | None = None
    to: list[str] = msgspec.field(default_factory=list)
    expires_at: datetime | None = None


_decoder = msgspec.json.Decoder(FollowLine | ActivityLine)


class ImportState(msgspec.Struct, kw_only=True):
    """Progress of one file, saved after every batch."""

    offset: int = 0
    """Bytes of the file fully imported."""
    line: int = 0
    """Lines of the file fully imported."""
    follows: int = 0
    activities: int = 0
    bad: int = 0
    done: bool = False


class BadLine(msgspec.Struct, frozen=True):
    """A line that was skipped, and why."""

    number: int
    message: str


def state_path_for(path: Path) -> Path:
    """Where the progress of ``path`` is kept by default: beside it."""
    return path.with_name(path.name + ".progress")


def load_state(path: Path) -> ImportState:
    """Saved progress, or a fresh start when there is none."""
    try:
        return msgspec.json.decode(path.read_bytes(), type=ImportState)
    except FileNotFoundError:
        return ImportState()


def _save_state(path: Path, state: ImportState) -> None:
    # Written aside and renamed: a crash leaves the old state or the new one, never half.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(msgspec.json.encode(state))
    os.replace(tmp, path)


def _activity(manager: Manager, line: ActivityLine, number: int, raw: bytes) -> Activity:
    config = manager.config
    activity = new_activity(
        actor=line.actor,
        verb=line.verb,
        object=line.object,
        target=line.target,
        time=line.time,
        extra=line.extra,
        foreign_id=line.foreign_id,
        to=line.to,
        expires_at=line.expires_at,
        verbs=config.verbs,
        limits=config.limits,
        known_groups=config.feeds.groups,
        categories=config.categories,
    )
    if line.foreign_id is None and line.time is not None:
        # A stable id, so a batch redone after an interruption writes the same activity.
        seed = f"import:{number}:{hashlib.blake2b(raw, digest_size=12).hexdigest()}"
        activity = msgspec.structs.replace(activity, id=ids.make_id(activity.time, seed))
    return activity


async def import_file(
    manager: Manager,
    path: Path,
    *,
    batch: int = 1_000,
    fanout: bool = True,
    backfill: int = 0,
    state_path: Path | None = None,
    restart: bool = False,
    on_progress: Callable[[int], None] = lambda _: None,
    on_bad: Callable[[BadLine], None] = lambda _: None,
    stop_after_batches: int | None = None,
) -> ImportState:
    """Import ``path`` from where its saved state left off; returns the final state.

    ``on_progress`` gets the number of bytes consumed by each batch, ``on_bad`` every skipped
    line. ``stop_after_batches`` interrupts the import on purpose (tests of resumption).
    """
    state_path = state_path or state_path_for(path)
    state = ImportState() if restart else load_state(state_path)
    if state.done:
        return state
    if state.offset:
        on_progress(state.offset)
    batches = 0
    with path.open("rb") as source:
        source.seek(state.offset)
        while True:
            lines: list[tuple[int, bytes]] = []
            size = 0
            for raw in source:
                size += len(raw)
                lines.append((state.line + len(lines) + 1, raw))
                if len(lines) >= batch:
                    break
            if not lines:
                break
            await _import_batch(
                manager, lines, state, fanout=fanout, backfill=backfill, on_bad=on_bad
            )
            state.offset += size
            state.line += len(lines)
            _save_state(state_path, state)
            on_progress(size)
            batches += 1
            if stop_after_batches is not None and batches >= stop_after_batches:
                return state
    state.done = True
    _save_state(state_path, state)
    return state


async def _import_batch(
    manager: Manager,
    lines: list[tuple[int, bytes]],
    state: ImportState,
    *,
    fanout: bool,
    backfill: int,
    on_bad: Callable[[BadLine], None],
) -> None:
    follows: dict[str, list[str]] = defaultdict(list)
    activities: list[Activity] = []
    bad = 0
    for number, raw in lines:
        if not raw.strip():
            continue
        try:
            parsed = _decoder.decode(raw)
            if isinstance(parsed, FollowLine):
                check_user_id(parsed.user, "user")
                check_user_id(parsed.target, "target")
                follows[parsed.user].append(parsed.target)
                state.follows += 1
            else:
                activities.append(_activity(manager, parsed, number, raw))
        except (msgspec.DecodeError, msgspec.ValidationError, NotifierError) as exc:
            bad += 1
            on_bad(BadLine(number, str(exc)))
    limit = asyncio.Semaphore(_CONCURRENCY)

    async def follow(user: str, targets: list[str]) -> None:
        async with limit:
            await manager.follow_many(user, targets, backfill=backfill)

    await asyncio.gather(*(follow(user, targets) for user, targets in follows.items()))
    step = manager.config.limits.max_batch
    for start in range(0, len(activities), step):
        await manager.add_activities(activities[start : start + step], fanout=fanout)
    state.activities += len(activities)
    state.bad += bad
