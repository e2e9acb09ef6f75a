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
@click.option("--host", default="127.0.0.1", show_default=True, help="Listen address.")
@click.option("--port", type=int, default=8000, show_default=True, help="Listen port.")
def demo(config_path: str | None, host: str, port: int) -> None:
    """Run the server with a demo page: two users' bells side by side, live.

    Everything is in this process, on the memory backend, with seeded users, follows and
    notifications, and a random secret and API key made at start. Prints the page's URL.
    """
    import contextlib

    from notifier.demo import run_demo

    def ready(url: str) -> None:
        click.echo(f"notifier demo: open {url}  (Ctrl-C stops it)")

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_demo(load_config(config_path), host, port, ready))


@main.command()
@click.option("--config", "config_path", envvar="NOTIFIER_CONFIG", help="TOML configuration.")
@click.option("--host", help="Listen address (default NOTIFIER_HOST or 127.0.0.1).")
@click.option("--port", type=int, help="Listen port (default NOTIFIER_PORT or 8000).")
@click.option("--log-level", default="info", show_default=True)
def serve(config_path: str | None, host: str | None, port: int | None, log_level: str) -> None:
    """Run the HTTP API (and websocket endpoint) with uvicorn."""
    import uvicorn

    from notifier.gcpolicy import settle_heap
    from notifier.logs import configure_logging
    from notifier.web.settings import ServerSettings, server_options
    from notifier.web.wiring import build_app

    configure_logging(log_level)
    config = load_config(config_path)
    try:
        settings = ServerSettings.load(config.server)
    except ConfigError as exc:
        click.echo(f"notifier: configuration error: {exc}", err=True)
        sys.exit(2)
    app = build_app(config, settings)
    options = server_options(settings)
    _raise_open_files_limit(settings.max_connections + 1_000)
    # Everything imported and built: the start-up heap is never scanned again, and a push's
    # garbage no longer brings full collections that hold every frame in flight back
    # (notifier/gcpolicy.py).
    settle_heap()
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port or settings.port,
        log_level=log_level,
        **options,
    )


@main.command()
@click.option("--config", "config_path", envvar="NOTIFIER_CONFIG", help="TOML configuration.")
def check(config_path: str | None) -> None:
    """Check the configuration, storage, broker and realtime Redis, in plain words; exit 1
    when something would stop notifier or lose data (docs/storage.md)."""
    import os

    from notifier.checks import deployment_findings

    findings = asyncio.run(deployment_findings(config_path, os.environ))
    for finding in findings:
        click.echo(finding.line())
    errors = sum(f.severity == "error" for f in findings)
    warnings = sum(f.severity == "warning" for f in findings)
    click.echo(f"notifier check: {errors} error(s), {warnings} warning(s)")
    sys.exit(1 if errors else 0)


def _raise_open_files_limit(wanted: int) -> None:
    """Raise this process's soft limit on open files towards ``wanted`` (never past the
    hard limit): a default soft limit of 1,024 would cap connections far below
    ``max_connections``."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _register() -> None:
    from notifier.bench.cli import bench
    from notifier.fanout.cli import import_command, worker
    from notifier.storage.cassandra_cli import cassandra

    main.add_command(bench)
    main.add_command(worker)
    main.add_command(import_command)
    main.add_command(cassandra)


_register()


if __name__ == "__main__":
    main()
