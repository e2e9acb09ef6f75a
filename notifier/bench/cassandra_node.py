"""A Cassandra node for a benchmark: a throw-away one from ``scripts/cassandra-node`` (on free
ports, with its own state folder, so it never meets the tests' node), or one the caller names;
and a fresh keyspace on it, with notifier's schema, dropped at the end."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from notifier.bench.procs import free_port
from notifier.storage.cassandra_schema import Replication, apply_migrations
from notifier.storage.cassandra_session import CassandraConnection, CassandraSettings

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cassandra-node"


@contextmanager
def node(given: str | None = None) -> Iterator[str]:
    """``host:port`` of a Cassandra node: ``given``, or one started now and stopped (its data
    deleted) on the way out."""
    if given:
        yield given
        return
    if not SCRIPT.exists():
        raise RuntimeError(
            f"{SCRIPT} is missing (a source checkout starts its own node); "
            "name a running node with --cassandra host:port"
        )
    state = Path(tempfile.mkdtemp(prefix="notifier-bench-cassandra-"))
    env = {
        **os.environ,
        "CASSANDRA_PORT": str(free_port()),
        "CASSANDRA_STORAGE_PORT": str(free_port()),
        "CASSANDRA_STATE_DIR": str(state),
    }

    def script(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), command], env=env, capture_output=True, text=True, check=False
        )

    try:
        started = script("start")
        ready = re.search(r"ready on (\S+):(\d+)", started.stdout)
        if started.returncode != 0 or ready is None:
            raise RuntimeError(f"scripts/cassandra-node start failed:\n{started.stderr}")
        yield f"{ready[1]}:{ready[2]}"
    finally:
        script("stop")
        shutil.rmtree(state, ignore_errors=True)


def storage_url(hosts: str, keyspace: str) -> str:
    """notifier's storage URL for ``keyspace`` on ``hosts`` (default consistency)."""
    return f"cassandra://{hosts}/{keyspace}?timeout=60"


@contextmanager
def keyspace(hosts: str) -> Iterator[str]:
    """A new keyspace on ``hosts`` with notifier's schema applied (replication factor 1);
    yields notifier's storage URL for it and drops it on the way out."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    url = storage_url(hosts, name)
    admin = CassandraConnection(CassandraSettings.from_url(url), {})
    try:
        apply_migrations(admin.session_sync(), name, Replication(factor=1))
        yield url
    finally:
        try:
            admin.session_sync().execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=120)
        finally:
            admin.close_sync()
