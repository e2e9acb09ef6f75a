"""Users' notification preferences on Cassandra: one row per user (``preferences ((ns, uid))``,
``cassandra_schema/003_preferences.cql``), the body as JSON (``notifier.preferences``).

A fanout chunk's read is ``uid IN (…)`` in slices of at most 100 users, run concurrently: the
same shape as a page's activity bodies. A user who mutes nothing has no row (a write of
default preferences deletes it). Writes are plain upserts and deletes, idempotent and last
write wins, so two quick saves from two tabs leave the later one.
"""

from __future__ import annotations

from collections.abc import Sequence

from notifier.preferences import Preferences, decode_preferences, encode_preferences
from notifier.storage.cassandra_session import CassandraConnection

_SLICE = 100
"""Users per ``IN`` query."""

QUERIES = {
    "preferences_get": "SELECT uid, body FROM {ks}.preferences WHERE ns = ? AND uid IN ?",
    "preferences_put": "INSERT INTO {ks}.preferences (ns, uid, body) VALUES (?, ?, ?)",
    "preferences_delete": "DELETE FROM {ks}.preferences WHERE ns = ? AND uid = ?",
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
