"""``notifier bench``: each scenario measures notifier next to its raw baseline in one run."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict

import click


@click.group()
def bench() -> None:
    """Measure notifier against raw baselines on this machine (ratios, not absolute times)."""


@bench.command()
@click.option("--clients", default=1000, show_default=True, help="Connected followers.")
@click.option("--rounds", default=5, show_default=True, help="Activities posted (repetitions).")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
def push(clients: int, rounds: int, as_json: bool) -> None:
    """Activity POSTed → websocket frame at every connected follower, vs a raw broadcast."""
    from notifier.bench import push as scenario

    results = asyncio.run(scenario.run(clients, rounds))
    if as_json:
        rows = [{k: v for k, v in asdict(r).items() if k != "latencies_ms"} for r in results]
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(scenario.table(results))
