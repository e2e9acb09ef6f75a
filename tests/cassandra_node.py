"""A Cassandra node for the test session, and storages on it with a fresh namespace each.

``NOTIFIER_TEST_CASSANDRA=host:port`` uses a running node. ``CI=true`` or
``NOTIFIER_TEST_CASSANDRA=start`` runs ``scripts/cassandra-node start`` once for the session
and ``stop`` at its end (a node that ``scripts/cassandra-node`` already runs is reused and
left running). Otherwise the Cassandra tests are skipped, loudly.

Every storage shares one connection and one keyspace, whose schema is applied once: creating
a keyspace or a table per test would cost seconds each on Cassandra. Tests are isolated by
the storage prefix, which is part of every partition key.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from notifier.storage.cassandra import CassandraStorage, connect
from notifier.storage.cassandra_schema import Replication, apply_migrations
from notifier.storage.cassandra_session import CassandraConnection
from tests import services

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "cassandra-node"
KEYSPACE = "notifier_test"

_connections: dict[str, CassandraConnection] = {}


def _node(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *command], capture_output=True, text=True, check=False, cwd=ROOT
    )


@contextmanager
def contact_points() -> Iterator[str]:
    """``host:port`` of a node for the session (see the module docstring)."""
    given = os.environ.get("NOTIFIER_TEST_CASSANDRA", "")
    try:
        if given and given != "start":
            yield given
            return
        if not (services.IN_CI or given == "start"):
            services.unavailable(
                "no Cassandra node: set NOTIFIER_TEST_CASSANDRA=host:port, or =start to run "
                "scripts/cassandra-node"
            )
            return
        running = re.search(r"running: (\S+):(\d+)", _node("status").stdout)
        if running:
            yield f"{running[1]}:{running[2]}"
            return
        started = _node("start")
        ready = re.search(r"ready on (\S+):(\d+)", started.stdout)
        if started.returncode != 0 or ready is None:
            services.unavailable(f"scripts/cassandra-node start failed:\n{started.stderr}")
            return
        try:
            yield f"{ready[1]}:{ready[2]}"
        finally:
            _node("stop")
    finally:
        for connection in _connections.values():
            connection.close_sync()
        _connections.clear()


def storage_factory(hosts: str) -> Callable[[], CassandraStorage]:
    """Makes storages on the session's node, each with a fresh prefix."""
    connection = _connections.get(hosts)
    if connection is None:
        connection = connect(f"cassandra://{hosts}/{KEYSPACE}?timeout=30")
        apply_migrations(connection.session_sync(), KEYSPACE, Replication(factor=1))
        connection.connect_sync()
        _connections[hosts] = connection

    def make() -> CassandraStorage:
        return CassandraStorage(connection, f"t{uuid.uuid4().hex[:12]}", owns_connection=False)

    return make
