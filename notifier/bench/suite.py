"""``notifier bench all``: every scenario in one run, and the targets each ratio is held to.

Absolute figures depend on the machine and on what else runs on it; ratios against a raw
baseline measured in the same run do not (much). Each target below names the ratio it is
about, so the report says plainly which are met.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from notifier.bench import cassandra_fanout, http_read
from notifier.bench import fanout as fanout_bench
from notifier.bench import peer as peer_bench
from notifier.bench import push as push_bench
from notifier.bench.procs import free_port, processes, redis_command, spawn, wait_port

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Sizes:
    """How big each scenario runs."""

    fanout_followers: tuple[int, ...]
    fanout_repeats: int
    read_stored: tuple[int, ...]
    read_load: http_read.LoadSettings
    push_clients: tuple[int, ...]
    push_rounds: int
    connections: int
    peer_followers: int
    cassandra_followers: tuple[int, ...] = ()
    """Cassandra fanout sizes (a node is started for them); none in the quick suite."""


FULL = Sizes(
    fanout_followers=(1_000, 10_000),
    fanout_repeats=3,
    read_stored=(100, 1_000_000),
    read_load=http_read.LoadSettings(duration_s=5, repetitions=3),
    push_clients=(1_000, 5_000),
    push_rounds=10,
    connections=10_000,
    peer_followers=10_000,
    cassandra_followers=(1_000,),
)
QUICK = Sizes(
    fanout_followers=(1_000,),
    fanout_repeats=1,
    read_stored=(100,),
    read_load=http_read.LoadSettings(duration_s=1, repetitions=1, warmup_s=0),
    push_clients=(200,),
    push_rounds=2,
    connections=500,
    peer_followers=500,
)


@dataclass
class Target:
    """One target: the ratio measured, the bound, whether it is met."""

    name: str
    ratio: float
    bound: float
    higher_is_better: bool = True

    @property
    def met(self) -> bool:
        return self.ratio >= self.bound if self.higher_is_better else self.ratio <= self.bound


@dataclass
class Report:
    """Everything measured, plus the targets."""

    quick: bool
    fanout: list[fanout_bench.FanoutResult] = field(default_factory=list)
    read: list[dict[str, Any]] = field(default_factory=list)
    push: list[list[push_bench.PushResult]] = field(default_factory=list)
    connections: list[push_bench.ConnectionsResult] = field(default_factory=list)
    peer: peer_bench.PeerResult | None = None
    cassandra: list[cassandra_fanout.CassandraFanoutResult] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for rounds in data["push"]:
            for result in rounds:
                result.pop("latencies_ms", None)
        for target, original in zip(data["targets"], self.targets, strict=True):
            target["met"] = original.met
        return data


@contextlib.contextmanager
def _redis() -> Iterator[str]:
    import shutil
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="notifier-bench-peer-"))
    port = free_port()
    try:
        with processes() as procs:
            proc = spawn(redis_command(port, folder))
            procs.append(proc)
            asyncio.run(wait_port(port, proc))
            yield f"redis://127.0.0.1:{port}/5"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(*, quick: bool = False, progress: Progress | None = None) -> Report:
    """Every scenario, one after the other (they would disturb each other in parallel)."""
    say = progress or (lambda _: None)
    sizes = QUICK if quick else FULL
    report = Report(quick=quick)
    for followers in sizes.fanout_followers:
        for feeds in ("flat", "notification"):
            result = asyncio.run(
                fanout_bench.run(
                    followers=followers, feeds=feeds, repeats=sizes.fanout_repeats, progress=say
                )
            )
            report.fanout.append(result)
            say(
                f"fanout/{feeds} {followers:,}: notifier {result.notifier:,.0f}/s, best raw "
                f"{result.best_baseline:,.0f}/s"
            )
    report.tables.append(fanout_bench.table(report.fanout))
    for stored in sizes.read_stored:
        say(f"read: first page over HTTP, {stored:,} stored activities")
        bench = http_read.run(sizes.read_load, backend="redis", stored=stored, progress=say)
        report.read.append(bench.summary())
        report.tables.append(http_read.table(bench))
    for clients in sizes.push_clients:
        say(f"push: {clients:,} connected followers")
        results = asyncio.run(push_bench.run(clients, sizes.push_rounds))
        report.push.append(results)
        report.tables.append(push_bench.table(results))
    say(f"connections: {sizes.connections:,} idle websockets")
    report.connections = asyncio.run(push_bench.bench_connections(sizes.connections))
    report.tables.append(push_bench.connections_table(report.connections))
    say("peer: Stream Framework (its own venv, the same workloads)")
    with _redis() as url:
        report.peer = peer_bench.run_peer(url, followers=sizes.peer_followers, progress=say)
    report.tables.append(peer_bench.table(report.peer))
    for followers in sizes.cassandra_followers:
        say(f"cassandra fanout: {followers:,} followers (starts a Cassandra node)")
        try:
            found = asyncio.run(cassandra_fanout.run(followers=followers, progress=say))
        except RuntimeError as exc:  # no Java / Maven / jars here: the rest still counts
            say(f"cassandra fanout skipped: {exc}")
            continue
        report.cassandra.append(found)
    if report.cassandra:
        report.tables.append(cassandra_fanout.table(report.cassandra))
    report.targets = targets(report)
    return report


def targets(report: Report) -> list[Target]:
    """The issue's targets, each as the ratio it constrains."""
    found: list[Target] = []
    for f in report.fanout:
        bound = 0.5 if f.feeds == "flat" else 0.25
        found.append(
            Target(
                f"fanout {f.feeds} {f.followers:,}: notifier / best raw",
                f.notifier / f.best_baseline,
                bound,
            )
        )
        if f.aggregated:
            found.append(
                Target(
                    f"fanout {f.feeds} {f.followers:,}: notifier / aggregated Lua",
                    f.notifier / f.aggregated,
                    0.5,
                )
            )
    sf = report.peer
    if sf is not None and sf.available:
        for f in report.fanout:
            theirs = sf.flat_writes_per_s if f.feeds == "flat" else sf.notification_writes_per_s
            if theirs:
                found.append(
                    Target(
                        f"fanout {f.feeds} {f.followers:,}: notifier / Stream Framework",
                        f.notifier / theirs,
                        10.0,
                    )
                )
    for read in report.read:
        mine, base = read["results"][0], read["results"][1]
        label = f"read {read['stored']:,} stored"
        found.append(
            Target(
                f"{label}: req/s / starlette JSON",
                mine["requests_per_s"] / base["requests_per_s"],
                0.5,
            )
        )
        found.append(
            Target(
                f"{label}: p99 / starlette JSON p99",
                mine["p99_ms"] / base["p99_ms"],
                2.0,
                higher_is_better=False,
            )
        )
    for mine_raw in report.push:
        mine, raw = mine_raw
        found.append(
            Target(
                f"push {mine.clients:,}: p99 / raw p99",
                mine.p99_ms / raw.p99_ms,
                1.5,
                higher_is_better=False,
            )
        )
        found.append(
            Target(
                f"push {mine.clients:,}: deliveries/s / raw",
                mine.deliveries_per_s / raw.deliveries_per_s,
                0.5,
            )
        )
    for c in report.cassandra:
        found.append(
            Target(f"cassandra fanout flat {c.followers:,}: notifier / raw driver", c.ratio, 0.5)
        )
    if len(report.connections) == 2:
        mine_c, raw_c = report.connections
        found.append(
            Target(
                f"memory per idle connection ({mine_c.connections:,}) / raw",
                mine_c.kib_per_connection / raw_c.kib_per_connection,
                1.25,
                higher_is_better=False,
            )
        )
    return found


def targets_table(found: list[Target]) -> str:
    """One line per target: ratio, bound, met or not."""
    rows = [f"{'target':<58} {'ratio':>7} {'bound':>7}  met"]
    for t in found:
        sign = ">=" if t.higher_is_better else "<="
        rows.append(
            f"{t.name:<58} {t.ratio:>7.2f} {sign}{t.bound:>5.2f}  {'yes' if t.met else 'NO'}"
        )
    return "\n".join(rows)


def plot(report: Report, path: str) -> None:
    """A bar chart of every target's ratio against its bound (needs matplotlib)."""
    import importlib

    try:
        importlib.import_module("matplotlib").use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError as exc:  # optional extra
        raise RuntimeError("--plot needs matplotlib: pip install 'notifier[bench]'") from exc
    names = [t.name for t in report.targets]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(names) + 1.5))
    colors = ["tab:green" if t.met else "tab:red" for t in report.targets]
    ax.barh(names, [t.ratio for t in report.targets], color=colors)
    for y, t in enumerate(report.targets):
        ax.plot([t.bound, t.bound], [y - 0.4, y + 0.4], color="black")
    ax.invert_yaxis()
    ax.set_xscale("log")  # ratios from 0.1 to 30 side by side
    ax.set_xlabel("ratio (bar, log scale) against its target (black line); green: met")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
