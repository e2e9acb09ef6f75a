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


@bench.command(name="all")
@click.option("--quick", is_flag=True, help="Small sizes: the whole suite in under two minutes.")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout instead of tables.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Also draw the targets as a PNG.")
def all_scenarios(quick: bool, as_json: bool, plot: str | None) -> None:
    """Every scenario (fanout, read, push, connections, Stream Framework peer) and the
    targets each ratio is held to. Progress goes to stderr."""
    from notifier.bench import suite

    report = suite.run(quick=quick, progress=lambda line: click.echo(f"… {line}", err=True))
    if plot:
        try:
            suite.plot(report, plot)
        except RuntimeError as exc:  # matplotlib missing: the figures still print
            click.echo(f"notifier bench: no plot: {exc}", err=True)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2, default=str))
        return
    for table in report.tables:
        click.echo(table + "\n")
    click.echo(suite.targets_table(report.targets))


@bench.command()
@click.option("--followers", default=10_000, show_default=True)
@click.option("--feeds", type=click.Choice(["flat", "notification"]), default="flat")
@click.option("--workers", default=2, show_default=True, help="notifier worker processes.")
@click.option("--repeats", default=3, show_default=True)
@click.option("--burst", type=int, help="Activities per repetition [default: 50,000 writes; "
              "10 with --cluster].")  # fmt: skip
@click.option("--cluster", "primaries", type=int, default=0, metavar="PRIMARIES",
              help="On a Redis Cluster of that many primaries, next to one Redis: Redis CPU "
              "per feed-write and the spread of keys and CPU across primaries.")  # fmt: skip
@click.option("--storage", type=click.Choice(["redis", "cassandra"]), default="redis",
              show_default=True, help="cassandra: flat timelines on a Cassandra node, vs the "
              "raw cassandra-driver inserting the same rows.")  # fmt: skip
@click.option("--cassandra", metavar="HOST:PORT", help="With --storage cassandra: a running "
              "node to use (a fresh keyspace, dropped after) [default: start one].")  # fmt: skip
@click.option("--breakdown", is_flag=True, help="Then one more burst, measured: CPU per "
              "activity per process and step (py-spy for the steps, if installed).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
def fanout(
    followers: int,
    feeds: str,
    workers: int,
    repeats: int,
    burst: int | None,
    primaries: int,
    storage: str,
    cassandra: str | None,
    breakdown: bool,
    as_json: bool,
) -> None:
    """Follower-feed writes/s through HTTP, broker and workers, vs raw Redis writes (or, with
    --cluster, what a Redis Cluster spends per write, vs one Redis; or, with --storage
    cassandra, vs the raw cassandra-driver)."""
    progress = lambda line: click.echo(f"… {line}", err=True)  # noqa: E731
    if storage == "cassandra":
        if feeds != "flat" or primaries:
            raise click.UsageError("--storage cassandra measures flat feeds on one node")
        from notifier.bench import cassandra_fanout

        on_cassandra = asyncio.run(
            cassandra_fanout.run(
                followers=followers,
                workers=workers,
                repeats=repeats,
                burst=burst,
                cassandra=cassandra,
                progress=progress,
            )
        )
        if as_json:
            click.echo(json.dumps({**asdict(on_cassandra), "ratio": on_cassandra.ratio},
                                  indent=2))  # fmt: skip
        else:
            click.echo(cassandra_fanout.table([on_cassandra]))
        return
    if primaries:
        from notifier.bench import cluster

        on_cluster = asyncio.run(
            cluster.run(
                followers=followers,
                feeds=feeds,
                primaries=primaries,
                burst=burst or 10,
                repeats=repeats,
                workers=workers,
                progress=progress,
            )
        )
        if as_json:
            click.echo(json.dumps({**asdict(on_cluster), "cpu_ratio": on_cluster.cpu_ratio},
                                  indent=2))  # fmt: skip
        else:
            click.echo(cluster.table(on_cluster))
        return
    from notifier.bench import fanout as scenario

    result = asyncio.run(
        scenario.run(
            followers=followers,
            feeds=feeds,
            workers=workers,
            repeats=repeats,
            burst=burst,
            progress=progress,
            breakdown=breakdown,
        )
    )
    if as_json:
        click.echo(json.dumps(asdict(result), indent=2))
    else:
        click.echo(scenario.table([result]))
        if result.breakdown is not None:
            from notifier.bench.breakdown import table as breakdown_table

            click.echo("\n" + breakdown_table(result.breakdown))


@bench.command()
@click.option("--stored", default=100, show_default=True, help="Older activities preloaded.")
@click.option("--duration", default=5, show_default=True, help="Seconds per wrk run.")
@click.option("--repetitions", default=3, show_default=True)
def read(stored: int, duration: int, repetitions: int) -> None:
    """First page of a notification feed over HTTP (wrk), vs a minimal starlette endpoint."""
    from notifier.bench import http_read

    load = http_read.LoadSettings(duration_s=duration, repetitions=repetitions)
    result = http_read.run(load, backend="redis", stored=stored, progress=_progress)
    click.echo(http_read.table(result))


@bench.command()
@click.option("--count", default=10_000, show_default=True, help="Idle connections.")
def connections(count: int) -> None:
    """Server memory per idle websocket connection, vs a bare websockets server."""
    from notifier.bench import push as scenario

    click.echo(scenario.connections_table(asyncio.run(scenario.bench_connections(count))))


@bench.command()
@click.option("--deliveries", type=click.IntRange(1), default=2_000, show_default=True,
              help="Webhooks per round.")  # fmt: skip
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="notifier worker processes.")  # fmt: skip
@click.option("--threads", type=click.IntRange(1, 1000), default=8, show_default=True,
              help="Threads per worker process.")  # fmt: skip
@click.option("--rounds", type=click.IntRange(1), default=3, show_default=True,
              help="Measured rounds (after a warm-up).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
def webhooks(deliveries: int, workers: int, threads: int, rounds: int, as_json: bool) -> None:
    """Webhook deliveries/s through notifier's workers, vs one httpx client posting the same
    signed bodies with as many requests in flight, to the same receiver process."""
    from notifier.bench import webhooks as scenario

    result = asyncio.run(scenario.run(deliveries, workers, threads, rounds, progress=_progress))
    if as_json:
        click.echo(json.dumps(result.summary(), indent=2))
    else:
        click.echo(scenario.table(result))


@bench.command()
@click.option("--redis-url", required=True, help="A Redis db the peer may use (keys sfpeer:*).")
@click.option("--followers", default=10_000, show_default=True)
def peer(redis_url: str, followers: int) -> None:
    """Stream Framework 1.4.0 on the same workloads (installed into .bench/ on first use)."""
    from notifier.bench import peer as scenario

    result = scenario.run_peer(redis_url, followers=followers, progress=_progress)
    click.echo(scenario.table(result))


def _progress(line: str) -> None:
    click.echo(f"… {line}", err=True)
