"""The Cassandra schema as numbered migrations, and the one routine that applies them.

Each ``NNN_name.cql`` file beside this module is one migration: CQL statements separated by
``;``, written against the keyspace in use, each idempotent (``IF NOT EXISTS``) so that a run
interrupted half-way can simply be repeated. ``apply_migrations`` creates the keyspace, then
applies the files it has not recorded yet in the ``schema_migrations`` table, in order, and
records each with a checksum of its text. A recorded migration whose text has changed is an
error: released migrations are immutable, later changes are new files.

Applying DDL is a deployment step (``notifier cassandra init``), not something every process
does at start: concurrent schema changes from many starting workers are how Cassandra clusters
end up with schema disagreement. Processes only *check* the recorded version (``check_version``)
and refuse to run against a keyspace that is behind or ahead of them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from notifier.errors import ConfigError

_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.cql$")
KEYSPACE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version int PRIMARY KEY,
    name text,
    checksum text,
    applied_at timestamp
)"""


@dataclass(frozen=True)
class Migration:
    """One numbered schema file."""

    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    @property
    def statements(self) -> list[str]:
        """The file's statements, comments removed (none of our CQL has ``--`` in strings)."""
        lines = [line.split("--", 1)[0] for line in self.text.splitlines()]
        return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def migrations() -> list[Migration]:
    """Every migration shipped with this version of notifier, oldest first."""
    found = []
    for item in resources.files(__name__).iterdir():
        match = _FILE.match(item.name)
        if match:
            found.append(Migration(int(match[1]), match[2], item.read_text()))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise ConfigError("Cassandra migrations must be numbered 001, 002, … without gaps")
    return found


def latest_version() -> int:
    """The schema version this notifier needs."""
    return migrations()[-1].version


@dataclass(frozen=True)
class Replication:
    """How a new keyspace is replicated: SimpleStrategy with one factor, or
    NetworkTopologyStrategy with a factor per data centre."""

    factor: int = 1
    per_dc: tuple[tuple[str, int], ...] = ()

    def cql(self) -> str:
        if self.per_dc:
            dcs = ", ".join(f"'{dc}': {n}" for dc, n in self.per_dc)
            return f"{{'class': 'NetworkTopologyStrategy', {dcs}}}"
        return f"{{'class': 'SimpleStrategy', 'replication_factor': {self.factor}}}"


def create_keyspace_cql(keyspace: str, replication: Replication) -> str:
    """``CREATE KEYSPACE IF NOT EXISTS`` (an existing keyspace keeps its replication)."""
    if not KEYSPACE.match(keyspace):
        raise ConfigError(f"keyspace {keyspace!r} must match [A-Za-z][A-Za-z0-9_]*")
    return f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication.cql()}"


def applied_versions(session: Any, keyspace: str) -> dict[int, str]:
    """Recorded migrations (version -> checksum); empty when none were recorded."""
    tables = session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (keyspace,)
    )
    if "schema_migrations" not in {row[0] for row in tables}:
        return {}
    rows = session.execute(f"SELECT version, checksum FROM {keyspace}.schema_migrations")
    return {int(row[0]): str(row[1]) for row in rows}


def apply_migrations(session: Any, keyspace: str, replication: Replication) -> list[Migration]:
    """Create the keyspace and apply missing migrations; returns those applied now.

    Blocking (driver calls): run it from the CLI or a thread, not on an event loop. Safe to
    repeat, and to re-run after an interruption: every statement is idempotent and a version
    is recorded only after all its statements succeeded.
    """
    session.execute(create_keyspace_cql(keyspace, replication))
    session.set_keyspace(keyspace)
    session.execute(VERSION_TABLE)
    done = applied_versions(session, keyspace)
    applied = []
    for migration in migrations():
        recorded = done.get(migration.version)
        if recorded is not None:
            if recorded != migration.checksum:
                raise ConfigError(
                    f"migration {migration.version:03d}_{migration.name} was applied with "
                    f"different text (checksum {recorded}, now {migration.checksum}); released "
                    "migrations are immutable, add a new one instead"
                )
            continue
        for statement in migration.statements:
            session.execute(statement)
        session.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
            "VALUES (%s, %s, %s, %s) IF NOT EXISTS",
            (migration.version, migration.name, migration.checksum, datetime.now(UTC)),
        )
        applied.append(migration)
    return applied


def check_version(session: Any, keyspace: str) -> None:
    """Raise ConfigError unless ``keyspace`` has exactly the schema this notifier needs."""
    if not KEYSPACE.match(keyspace):
        raise ConfigError(f"keyspace {keyspace!r} must match [A-Za-z][A-Za-z0-9_]*")
    have = max(applied_versions(session, keyspace), default=0)
    need = latest_version()
    if have < need:
        raise ConfigError(
            f"Cassandra keyspace {keyspace!r} has schema version {have}, this notifier needs "
            f"{need}: run `notifier cassandra init`"
        )
    if have > need:
        raise ConfigError(
            f"Cassandra keyspace {keyspace!r} has schema version {have}, newer than this "
            f"notifier's {need}: upgrade notifier"
        )
