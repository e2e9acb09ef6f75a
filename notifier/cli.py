"""The ``notifier`` command: serve, worker, demo and admin commands."""

from __future__ import annotations

import asyncio
import sys

import click

from notifier.config import Config
from notifier.errors import ConfigError


def load_config(path: str | None) -> Config:
    """The configuration, or one clear line on stderr and exit status 2."""
    try:
        return Config.load(path)
    except ConfigError as exc:
        click.echo(f"notifier: configuration error: {exc}", err=True)
        sys.exit(2)


@click.group()
@click.version_option(package_name="notifier")
def main() -> None:
    """notifier: realtime notification and activity feeds."""


@main.command()
@click.option("--config", "config_path", envvar="NOTIFIER_CONFIG", help="TOML configuration.")
def demo(config_path: str | None) -> None:
    """Seed a few users and activities on the memory backend and print a notification feed."""
    from notifier.demo import print_demo

    asyncio.run(print_demo(load_config(config_path)))


@main.command()
def serve() -> None:
    """Run the HTTP and websocket server (not built yet)."""
    click.echo("notifier serve: the HTTP server is not built yet (see issue: HTTP API)", err=True)
    sys.exit(1)


@main.command()
def worker() -> None:
    """Run fanout workers (not built yet)."""
    click.echo("notifier worker: fanout workers are not built yet (see issue: fanout)", err=True)
    sys.exit(1)
