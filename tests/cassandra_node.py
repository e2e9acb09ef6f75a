"""Cassandra for the test session (one node, or a three-node cluster), and storages on it
with a fresh namespace each.

One node: ``NOTIFIER_TEST_CASSANDRA=host:port`` uses a running node. ``CI=true`` or
``NOTIFIER_TEST_CASSANDRA=start`` runs ``scripts/cassandra-node start`` once for the session
and ``stop`` at its end (a node that ``scripts/cassandra-node`` already runs is reused and
left running). Otherwise the Cassandra tests are skipped, loudly.

A cluster: ``NOTIFIER_TEST_CASSANDRA_CLUSTER=start`` runs ``scripts/cassandra-cluster`` (three
nodes on 127.0.0.1-3) the same way, and ``=host1,host2,host3:port`` uses a cluster of yours;
either way every Cassandra test of the session runs on it instead of the single node, with a
keyspace of replication factor 3 and LOCAL_QUORUM reads and writes (``url``).

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
from notifier.storage.cassandra_schema import apply_migrations
from notifier.storage.cassandra_session import CassandraConnection, CassandraSettings
from tests import services

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "cassandra-node"
CLUSTER_SCRIPT = ROOT / "scripts" / "cassandra-cluster"
CLUSTER = "NOTIFIER_TEST_CASSANDRA_CLUSTER"
KEYSPACE = os.environ.get("NOTIFIER_TEST_CASSANDRA_KEYSPACE", "notifier_test")
"""The test keyspace. Branches whose schemas differ (a migration one has and another has not)
must not share one on a shared node: a keyspace newer than a branch's schema refuses it."""

_connections: dict[str, CassandraConnection] = {}


def _run(script: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(script), *command], capture_output=True, text=True, check=False, cwd=ROOT
    )


def cluster(*command: str) -> subprocess.CompletedProcess[str]:
    """``scripts/cassandra-cluster <command>`` (``kill 2``, ``restart 2``…), its output captured."""
    return _run(CLUSTER_SCRIPT, *command)


def url(hosts: str) -> str:
    """The test keyspace on ``hosts``, read and written at LOCAL_QUORUM. The tests name every
    node of a cluster, so the replication factor (for creating the keyspace) is the number of
    contact points, at most 3: 1 on a single node, 3 on the three-node cluster."""
    factor = min(3, len(CassandraSettings.from_url(f"cassandra://{hosts}").hosts))
    return (
        f"cassandra://{hosts}/{KEYSPACE}?timeout=30&consistency=LOCAL_QUORUM"
        f"&replication_factor={factor}"
    )


@contextmanager
def contact_points() -> Iterator[str]:
    """``host:port`` of a node, or ``host1,host2,host3:port`` of a cluster, for the session
    (see the module docstring)."""
    try:
        if os.environ.get(CLUSTER):
            with cluster_contact_points() as hosts:
                yield hosts
        else:
            with _node_contact_point() as hosts:
                yield hosts
    finally:
        for connection in _connections.values():
            connection.close_sync()
        _connections.clear()


@contextmanager
def _node_contact_point() -> Iterator[str]:
    given = os.environ.get("NOTIFIER_TEST_CASSANDRA", "")
    if given and given != "start":
        yield given
        return
    if not (services.IN_CI or given == "start"):
        services.unavailable(
            "no Cassandra node: set NOTIFIER_TEST_CASSANDRA=host:port, or =start to run "
            "scripts/cassandra-node"
        )
        return
    running = re.search(r"running: (\S+):(\d+)", _run(SCRIPT, "status").stdout)
    if running:
        yield f"{running[1]}:{running[2]}"
        return
    started = _run(SCRIPT, "start")
    ready = re.search(r"ready on (\S+):(\d+)", started.stdout)
    if started.returncode != 0 or ready is None:
        services.unavailable(f"scripts/cassandra-node start failed:\n{started.stderr}")
        return
    try:
        yield f"{ready[1]}:{ready[2]}"
    finally:
        _run(SCRIPT, "stop")


def cluster_given() -> bool:
    """Whether ``NOTIFIER_TEST_CASSANDRA_CLUSTER`` names a cluster of the user's (which the
    tests must not kill nodes of) rather than asking for ``scripts/cassandra-cluster``."""
    return os.environ.get(CLUSTER, "") not in ("", "start")


@contextmanager
def cluster_contact_points() -> Iterator[str]:
    """``host1,host2,host3:port`` of a three-node cluster: the one ``NOTIFIER_TEST_CASSANDRA_
    CLUSTER`` names, or (when it says ``start``, or under ``CI=true``) the one
    ``scripts/cassandra-cluster`` runs: reused and left running when it already runs, else
    started now and stopped at the end."""
    given = os.environ.get(CLUSTER, "")
    if cluster_given():
        yield given
        return
    if not (services.IN_CI or given == "start"):
        services.unavailable(
            f"no Cassandra cluster: set {CLUSTER}=start to run scripts/cassandra-cluster, "
            "or =host1,host2,host3:port"
        )
        return
    running = re.search(r"running: (\S+)", cluster("status").stdout)
    if running:
        yield running[1]
        return
    started = cluster("start")
    ready = re.search(r"cluster ready: (\S+)", started.stdout)
    if started.returncode != 0 or ready is None:
        cluster("stop")
        services.unavailable(f"scripts/cassandra-cluster start failed:\n{started.stderr}")
        return
    try:
        yield ready[1]
    finally:
        cluster("stop")


def connection(hosts: str) -> CassandraConnection:
    """The session's one connection to ``hosts``, the test keyspace migrated (once)."""
    found = _connections.get(hosts)
    if found is None:
        found = connect(url(hosts))
        apply_migrations(found.session_sync(), KEYSPACE, found.settings.replication)
        found.connect_sync()
        _connections[hosts] = found
    return found


def close_connection(hosts: str) -> None:
    """Close the session's connection to ``hosts`` (before their Cassandra stops)."""
    found = _connections.pop(hosts, None)
    if found is not None:
        found.close_sync()


def storage_factory(hosts: str) -> Callable[[], CassandraStorage]:
    """Makes storages on the session's node or cluster, each with a fresh prefix."""
    shared = connection(hosts)

    def make() -> CassandraStorage:
        return CassandraStorage(shared, f"t{uuid.uuid4().hex[:12]}", owns_connection=False)

    return make
