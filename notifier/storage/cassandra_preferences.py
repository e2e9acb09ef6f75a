"""Users' notification preferences on Cassandra: one row per user (``preferences ((ns, uid))``,
``cassandra_schema/003_preferences.cql``), the body as JSON (``notifier.preferences``).

A fanout chunk's read is ``uid IN (…)`` in slices of at most 100 users, run concurrently: the
same shape as a page's activity bodies. A user who mutes nothing has no row (a write of
default preferences deletes it). ``write`` is a plain upsert or delete (last write wins);
``update``, what the API and the unsubscribe link use, is a compare-and-set on the body
(Paxos: ``IF NOT EXISTS``, ``IF body = <the body read>``), so that two changes at the same
moment both stay. Mixing the two on one user is what Cassandra warns against (a plain write
can be ordered before a conditional one it followed); ``write`` is for imports and tests.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence

from cassandra.protocol import ErrorMessage

from notifier.errors import Conflict
from notifier.preferences import Preferences, decode_preferences, encode_preferences
from notifier.storage.cassandra_session import (
    CAS_WRITE_UNKNOWN,
    COMMIT_ERRORS,
    CassandraConnection,
    outcome_unknown,
)

log = logging.getLogger(__name__)

_SLICE = 100
"""Users per ``IN`` query."""

QUERIES = {
    "preferences_get": "SELECT uid, body FROM {ks}.preferences WHERE ns = ? AND uid IN ?",
    "preferences_put": "INSERT INTO {ks}.preferences (ns, uid, body) VALUES (?, ?, ?)",
    "preferences_delete": "DELETE FROM {ks}.preferences WHERE ns = ? AND uid = ?",
    "preferences_get_one": "SELECT body FROM {ks}.preferences WHERE ns = ? AND uid = ?",
    "preferences_insert_if_none": (
        "INSERT INTO {ks}.preferences (ns, uid, body) VALUES (?, ?, ?) IF NOT EXISTS"
    ),
    "preferences_update_if": (
        "UPDATE {ks}.preferences SET body = ? WHERE ns = ? AND uid = ? IF body = ?"
    ),
    "preferences_delete_if": "DELETE FROM {ks}.preferences WHERE ns = ? AND uid = ? IF body = ?",
}


class CassandraPreferences:
    """``Storage.preferences`` / ``put_preferences`` for ``CassandraStorage``."""

    def __init__(self, connection: CassandraConnection, prefix: str) -> None:
        self.conn = connection
        self.prefix = prefix

    async def read(self, users: Sequence[str]) -> dict[str, Preferences]:
        """Preferences of the ``users`` who have some."""
        wanted = list(dict.fromkeys(users))
        if not wanted:
            return {}
        results = await self.conn.run_all(
            ("preferences_get", (self.prefix, wanted[i : i + _SLICE]))
            for i in range(0, len(wanted), _SLICE)
        )
        return {row[0]: decode_preferences(row[1]) for rows in results for row in rows}

    async def write(self, user: str, prefs: Preferences) -> None:
        """Replace ``user``'s preferences; default ones delete the row."""
        if prefs.is_default:
            await self.conn.run("preferences_delete", self.prefix, user)
        else:
            await self.conn.run("preferences_put", self.prefix, user, encode_preferences(prefs))

    async def update(self, user: str, change: Callable[[Preferences], Preferences]) -> Preferences:
        """``Storage.update_preferences``: a serial read, ``change``, and a write conditional
        on the body read; again when another write came first. A write whose answer is lost
        is settled by the next serial read (it completes a proposal in flight first): if
        it applied, ``change`` (idempotent) finds nothing more to do."""
        attempts = self.conn.settings.cas_attempts
        for attempt in range(attempts):
            raw = await self._read_serial(user)
            before = decode_preferences(raw) if raw is not None else Preferences()
            after = change(before)
            if after == before:
                return before
            body = encode_preferences(after)
            call: tuple[str, tuple[object, ...]]
            if raw is None:
                call = ("preferences_insert_if_none", (self.prefix, user, body))
            elif after.is_default:
                call = ("preferences_delete_if", (self.prefix, user, raw))
            else:
                call = ("preferences_update_if", (body, self.prefix, user, raw))
            try:
                rows = await self.conn.run(call[0], *call[1])
                if rows and rows[0][0]:
                    return after
            except COMMIT_ERRORS as exc:
                if not outcome_unknown(exc):
                    raise
                log.warning("preferences write outcome unknown, reading again user=%s", user)
            await asyncio.sleep(random.uniform(0, 0.01 * 2 ** min(attempt, 6)))
        raise Conflict(f"the preferences of {user!r} stayed contended for {attempts} attempts")

    async def _read_serial(self, user: str) -> bytes | None:
        """The stored body at the serial consistency (a read contended by a proposal in
        flight is read again)."""
        attempts = self.conn.settings.cas_attempts
        for attempt in range(attempts):
            try:
                rows = await self.conn.run("preferences_get_one", self.prefix, user, serial=True)
            except ErrorMessage as exc:
                if exc.code != CAS_WRITE_UNKNOWN:
                    raise
                await asyncio.sleep(random.uniform(0, 0.01 * 2 ** min(attempt, 6)))
                continue
            return _bytes(rows[0][0]) if rows else None
        raise Conflict(f"the preferences of {user!r} stayed contended for {attempts} attempts")


def _bytes(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else body
