"""``notifier cassandra init | status``: schema management for the Cassandra backend.

Schema changes are a deployment step run once per release, not something every starting
process races to do; processes only check the recorded version and refuse to start against
a keyspace that is behind (see ``notifier.storage.cassandra_schema``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from cassandra import DriverException
from cassandra.cluster import NoHostAvailable

from notifier.config import Config
from notifier.errors import ConfigError
from notifier.storage.cassandra import connect
from notifier.storage.cassandra_schema import (
    applied_versions,
    apply_migrations,
    latest_version,
    migrations,
)
from notifier.storage.cassandra_session import CassandraConnection

_url = click.option(
    "--url",
    help="cassandra://host1,host2:port/keyspace?replication_factor=3 "
    "(default: the configured storage URL)",
)
_config = click.option("--config", "config_path", envvar="NOTIFIER_CONFIG", help="TOML file.")


def _fail(message: str, status: int) -> None:
    click.echo(f"notifier cassandra: {message}", err=True)
    sys.exit(status)


@contextmanager
def _connected(url: str | None, config_path: str | None) -> Iterator[CassandraConnection]:
    """A connection with its session open, or one clear line on stderr and an exit status."""
    connection: CassandraConnection | None = None
    try:
        url = url or Config.load(config_path).storage_url
        if not url.startswith("cassandra://"):
            raise ConfigError(f"storage url {url!r} is not a cassandra:// url; pass --url")
        connection = connect(url)
        connection.session_sync()
        yield connection
    except ConfigError as exc:
        _fail(f"configuration error: {exc}", 2)
    except (NoHostAvailable, DriverException, OSError) as exc:
        _fail(f"{type(exc).__name__}: {exc}", 1)
    finally:
        if connection is not None:
            connection.close_sync()


@click.group(name="cassandra")
def cassandra() -> None:
    """Cassandra backend: create and upgrade the schema."""


@cassandra.command()
@_url
@_config
def init(url: str | None, config_path: str | None) -> None:
    """Create the keyspace and apply missing schema migrations (safe to repeat).

    A new keyspace gets the replication named in the URL (``replication_factor=N`` or
    ``replication=dc1:3,dc2:3``); an existing one keeps its own.
    """
    with _connected(url, config_path) as connection:
        keyspace = connection.settings.keyspace
        replication = connection.settings.replication
        for migration in apply_migrations(connection.session, keyspace, replication):
            click.echo(f"{keyspace}: applied {migration.version:03d}_{migration.name}")
        click.echo(f"{keyspace}: schema version {latest_version()}, up to date")


@cassandra.command()
@_url
@_config
def status(url: str | None, config_path: str | None) -> None:
    """Show which migrations the keyspace has; exit 3 when some are missing."""
    with _connected(url, config_path) as connection:
        keyspace = connection.settings.keyspace
        done = applied_versions(connection.session, keyspace)
        missing = False
        for migration in migrations():
            mark = "applied" if migration.version in done else "MISSING"
            missing = missing or migration.version not in done
            click.echo(f"{keyspace}: {migration.version:03d}_{migration.name} {mark}")
    if missing:
        _fail("run `notifier cassandra init`", 3)
