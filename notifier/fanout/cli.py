"""``notifier worker``, ``notifier import`` and ``notifier deadletters``: the fanout commands.

``notifier.cli`` adds these commands to its group; ``python -m notifier.fanout.cli`` runs them
on their own (the worker supervisor starts its child processes that way).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from notifier.config import Config
from notifier.errors import ConfigError
from notifier.logs import configure_logging

if TYPE_CHECKING:
    from notifier.fanout.actors import FanoutActors
    from notifier.fanout.deadletters import DeadLetter

log = logging.getLogger(__name__)


def _config(path: str | None) -> Config:
    try:
        return Config.load(path)
    except ConfigError as exc:
        click.echo(f"notifier: configuration error: {exc}", err=True)
        sys.exit(2)


@click.command()
@click.option("--config", "config_path", envvar="NOTIFIER_CONFIG", help="TOML configuration.")
@click.option(
    "--processes",
    "-p",
    type=click.IntRange(1, 256),
    default=lambda: os.cpu_count() or 1,
    show_default="CPU count",
    help="Worker processes (each runs its own event loop).",
)
@click.option(
    "--threads",
    "-t",
    type=click.IntRange(1, 1000),
    help="Jobs in flight per process [fanout.threads].",
)
@click.option("--queues", "-Q", multiple=True, help="Consume only these queues (repeatable).")
@click.option("--log-level", default="info", show_default=True)
def worker(
    config_path: str | None,
    processes: int,
    threads: int | None,
    queues: tuple[str, ...],
    log_level: str,
) -> None:
    """Run fanout workers until SIGTERM / SIGINT (finishing the jobs in hand)."""
    configure_logging(log_level)
    config = _config(config_path)
    from notifier.fanout.broker import IN_PROCESS, broker_url_for

    try:
        if broker_url_for(config) == IN_PROCESS:
            raise ConfigError(
                "notifier worker needs Redis: with memory storage the fanout runs inside "
                "the serving process (set NOTIFIER_STORAGE_URL=redis://…)"
            )
    except ConfigError as exc:
        click.echo(f"notifier: configuration error: {exc}", err=True)
        sys.exit(2)
    if processes == 1:
        from notifier.fanout.runtime import run_worker

        run_worker(config, threads=threads, queues=queues or None)
        return
    child = [sys.executable, "-m", "notifier.fanout.cli", "worker", "--processes", "1"]
    child += ["--log-level", log_level]
    if config_path:
        child += ["--config", config_path]
    if threads:
        child += ["--threads", str(threads)]
    for queue in queues:
        child += ["--queues", queue]
    sys.exit(_supervise(child, processes))


def _supervise(command: list[str], processes: int) -> int:
    """Run ``processes`` copies of ``command``; restart any that dies; forward SIGTERM/SIGINT."""
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    procs = [subprocess.Popen(command) for _ in range(processes)]
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        for i, proc in enumerate(procs):
            code = proc.poll()
            if code is not None and not stopping:
                log.error("worker process %d exited with %d: restarting it", proc.pid, code)
                time.sleep(1)
                procs[i] = subprocess.Popen(command)
        if stopping and all(proc.poll() is not None for proc in procs):
            return 0
        time.sleep(0.2)


@click.command("import")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--config", "config_path", envvar="NOTIFIER_CONFIG", help="TOML configuration.")
@click.option("--batch", type=click.IntRange(1, 100_000), default=1_000, show_default=True)
@click.option(
    "--fanout/--no-fanout", default=True, show_default=True, help="Copy activities to followers."
)
@click.option(
    "--backfill", type=click.IntRange(0), default=0, show_default=True, help="Per new follow."
)
@click.option("--restart", is_flag=True, help="Ignore saved progress and start from line 1.")
@click.option(
    "--wait/--no-wait",
    default=None,
    help="Wait for the fanout to finish [default: only with the in-process broker].",
)
def import_command(
    files: tuple[Path, ...],
    config_path: str | None,
    batch: int,
    fanout: bool,
    backfill: int,
    restart: bool,
    wait: bool | None,
) -> None:
    """Load follows and activities from JSON Lines FILES (resumable; see docs/fanout.md).

    Exits with status 1 when lines were skipped as bad (each is reported with its number).
    """
    config = _config(config_path)
    try:
        bad = asyncio.run(_import(config, files, batch, fanout, backfill, restart, wait))
    except ConfigError as exc:
        click.echo(f"notifier: configuration error: {exc}", err=True)
        sys.exit(2)
    sys.exit(1 if bad else 0)


async def _import(
    config: Config,
    files: tuple[Path, ...],
    batch: int,
    fanout: bool,
    backfill: int,
    restart: bool,
    wait: bool | None,
) -> int:
    from notifier.fanout.broker import IN_PROCESS, broker_url_for
    from notifier.fanout.importer import BadLine, import_file
    from notifier.fanout.runtime import open_manager

    in_process = broker_url_for(config) == IN_PROCESS
    manager = open_manager(config)
    bad = 0
    try:
        for path in files:
            with click.progressbar(
                length=path.stat().st_size, label=path.name, file=sys.stderr
            ) as bar:

                def report(line: BadLine, path: Path = path) -> None:
                    click.echo(f"\n{path}:{line.number}: {line.message}", err=True)

                state = await import_file(
                    manager,
                    path,
                    batch=batch,
                    fanout=fanout,
                    backfill=backfill,
                    restart=restart,
                    on_progress=bar.update,
                    on_bad=report,
                )
            bad += state.bad
            click.echo(
                f"{path}: {state.follows} follows, {state.activities} activities, "
                f"{state.bad} bad lines ({state.line} lines)",
                err=True,
            )
        if wait or (wait is None and in_process):
            click.echo("waiting for fanout to finish…", err=True)
            await manager.join(24 * 3600)
    finally:
        await manager.close()
    return bad


@click.group()
def deadletters() -> None:
    """Fanout jobs that failed every retry (kept fanout.dead_letter_ttl_s, 7 days by default):
    list them, send them back, or discard them."""


_config_option = click.option(
    "--config", "config_path", envvar="NOTIFIER_CONFIG", help="TOML configuration."
)
_ids_option = click.option(
    "--id", "ids", multiple=True, help="A dead letter's id, as listed (repeatable)."
)
_all_option = click.option("--all", "everything", is_flag=True, help="Every dead letter.")


@deadletters.command("list")
@_config_option
def list_dead_letters(config_path: str | None) -> None:
    """One line per dead-lettered job: id, queue, job, age, what it fans out, why it failed."""
    from notifier.fanout import deadletters as letters

    found = letters.find(_broker_actors(config_path))
    now = time.time()
    for letter in found:
        click.echo(letter.line(now))
    click.echo(f"notifier deadletters: {len(found)} dead-lettered job(s)", err=True)


@deadletters.command()
@_config_option
@_ids_option
@_all_option
def requeue(config_path: str | None, ids: tuple[str, ...], everything: bool) -> None:
    """Send the selected jobs back to their queues with fresh retries."""
    from notifier.fanout import deadletters as letters

    _act("requeued", letters.requeue, config_path, ids, everything)


@deadletters.command()
@_config_option
@_ids_option
@_all_option
def discard(config_path: str | None, ids: tuple[str, ...], everything: bool) -> None:
    """Delete the selected jobs for good (their fanout never happens)."""
    from notifier.fanout import deadletters as letters

    _act("discarded", letters.discard, config_path, ids, everything)


def _act(
    done: str,
    action: Callable[[FanoutActors, set[str] | None], list[DeadLetter]],
    config_path: str | None,
    ids: tuple[str, ...],
    everything: bool,
) -> None:
    """Run ``action`` on the selection; exit 1 when an id named was not found."""
    if everything == bool(ids):
        click.echo("notifier deadletters: give --id ID (repeatable) or --all", err=True)
        sys.exit(2)
    wanted = None if everything else set(ids)
    acted = action(_broker_actors(config_path), wanted)
    click.echo(f"notifier deadletters: {done} {len(acted)} job(s)")
    missing = sorted((wanted or set()) - {letter.id for letter in acted})
    if missing:
        click.echo(f"notifier deadletters: not found: {' '.join(missing)}", err=True)
        sys.exit(1)


def _broker_actors(config_path: str | None) -> FanoutActors:
    """The fanout actors on the configured Redis broker; exit 2 when there is none to reach."""
    from notifier.fanout.actors import FanoutActors
    from notifier.fanout.broker import IN_PROCESS, broker_url_for, make_broker

    config = _config(config_path)
    try:
        url = broker_url_for(config)
        if url == IN_PROCESS:
            raise ConfigError(
                "with memory storage the fanout and its dead letters live inside the serving "
                "process: there are none to reach from here (set NOTIFIER_STORAGE_URL=redis://…)"
            )
    except ConfigError as exc:
        click.echo(f"notifier: configuration error: {exc}", err=True)
        sys.exit(2)
    return FanoutActors(make_broker(config.fanout, url), config.fanout)


@click.group()
def fanout_cli() -> None:
    """notifier's fanout commands."""


fanout_cli.add_command(worker)
fanout_cli.add_command(import_command)
fanout_cli.add_command(deadletters)

if __name__ == "__main__":
    fanout_cli()
