"""The ``notifier`` command: serve, worker, demo and admin commands."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import click

from notifier.config import Config
from notifier.errors import ConfigError

if TYPE_CHECKING:
    from notifier.web.settings import ServerSettings


def load_config(path: str | None) -> Config:
    """The configuration, or one clear line on stderr and exit status 2."""
    try:
        return Config.load(path)
    except ConfigError as exc:
        click.echo(f"notifier: configuration error: {exc}", err=True)
        sys.exit(2)


def load_server_settings(config: Config) -> ServerSettings:
    """The web server's settings, or one clear line on stderr and exit status 2."""
    from notifier.web.settings import ServerSettings

    try:
        return ServerSettings.load(config.server)
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
    notifications, and a random secret and API key made at start. Prints the page's URL,
    the API key, and a curl line that makes a notification appear in one of the bells.
    """
    import contextlib

    from notifier.demo import SHOWN, curl_line, run_demo

    def ready(url: str, api_key: str) -> None:
        click.echo(f"notifier demo: open {url}  (Ctrl-C stops it)")
        click.echo(f"notifier demo: API key {api_key}  (new at each start; docs/api.md)")
        click.echo(f"notifier demo: make a notification appear in {SHOWN[1]}'s bell:")
        click.echo(f"  {curl_line(url, api_key, SHOWN[1])}")

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
    from notifier.web.settings import server_options
    from notifier.web.wiring import build_app

    configure_logging(log_level)
    config = load_config(config_path)
    settings = load_server_settings(config)
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
        log_config=None,  # uvicorn's lines go through notifier's handler (format, redaction)
        access_log=False,  # notifier's own access line: no query strings (web/observe.py)
        **options,
    )


@main.command()
@click.argument("user")
@click.option(
    "--ttl",
    type=click.IntRange(min=1),
    help="Lifetime in seconds [server token_ttl; at most max_token_ttl].",
)
@click.option("--feeds", help="Only these feed groups, comma-separated [all of the user's].")
@click.option("--config", "config_path", envvar="NOTIFIER_CONFIG", help="TOML configuration.")
def token(user: str, ttl: int | None, feeds: str | None, config_path: str | None) -> None:
    """Print a user token for USER, signed as ``notifier serve`` signs them (for development
    and curl: ``-H "Authorization: Bearer $(notifier token bo)"``).

    It reads the server's own settings (NOTIFIER_SECRET, NOTIFIER_API_KEYS and the [server]
    table), so the token verifies on a server started with the same environment. The expiry
    goes to stderr, the token alone to stdout.
    """
    import time

    from notifier.errors import InvalidInput
    from notifier.web.auth import UserTokens

    config = load_config(config_path)
    settings = load_server_settings(config)
    groups = None if feeds is None else [g.strip() for g in feeds.split(",") if g.strip()]
    unknown = [g for g in groups or () if g not in config.feeds]
    if unknown:
        click.echo(f"notifier token: no feed group {', '.join(unknown)}", err=True)
        sys.exit(2)
    if ttl is not None and ttl > settings.max_token_ttl:
        click.echo(
            f"notifier token: --ttl {ttl} is capped at max_token_ttl ({settings.max_token_ttl} s)",
            err=True,
        )
    tokens = UserTokens(settings.secret, settings.token_ttl, settings.max_token_ttl)
    try:
        value, expires = tokens.issue(user, ttl, groups)
    except InvalidInput as exc:
        click.echo(f"notifier token: {exc}", err=True)
        sys.exit(2)
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(expires))
    lasts = expires - int(time.time())
    click.echo(f"notifier token: for {user}, expires {when} (in {lasts} s)", err=True)
    click.echo(value)


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
    from notifier.fanout.cli import deadletters, import_command, worker
    from notifier.storage.cassandra_cli import cassandra

    main.add_command(bench)
    main.add_command(worker)
    main.add_command(import_command)
    main.add_command(deadletters)
    main.add_command(cassandra)


_register()


if __name__ == "__main__":
    main()
