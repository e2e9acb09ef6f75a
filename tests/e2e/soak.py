"""``scripts/soak --minutes N``: the end-to-end driver, run continuously against one cluster.

Rounds of the e2e world (tests/e2e/world.py) follow each other for N minutes on the same users
and tabs; removals keep the live activities under a cap and feeds are trimmed anyway, so a
long run is steady state. Every ``--sample`` seconds it prints a row per notifier process
(web, worker, redis): RSS (``VmRSS`` of /proc/<pid>/status) and established TCP connections
(its socket fds that /proc/net/tcp{,6} lists as ESTABLISHED). At the end: the driver's report
(the same checks as the test) and, per process, whether RSS stayed flat after warm-up.

"Flat" means: RSS grew by at most max(10 %, 8 MiB) between the first and the last samples
after warm-up, and its least-squares slope would not grow it by more than that in an hour.
The warm-up must outlast what fills up by design: a web process's activity-body cache (an
LRU of 10,000 bodies) fills in about 20-25 minutes at the soak's rate, so judge with
``--minutes 60 --warmup 30``; shorter runs show the trend.

Exit status 0 when the report is clean and every RSS is flat, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.e2e.cluster import Cluster, running
from tests.e2e.driver import Driver
from tests.e2e.report import Options
from tests.e2e.world import Size
from tests.web.conftest import API_KEY

_CACHE = re.compile(r'^notifier_cache_entries\{cache="(\w+)"\} (\S+)$', re.M)

#: RSS growth after warm-up that still counts as flat: this share of the warm RSS, or this
#: many MiB, whichever is larger (allocators keep some slack; a leak keeps growing).
FLAT_SHARE = 0.10
FLAT_MIB = 8.0


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def established_inodes() -> set[str]:
    """Socket inodes of every ESTABLISHED TCP connection (state 01) in this namespace."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "01":
                found.add(parts[9])
    return found


def connections(pid: int, established: set[str]) -> int | None:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    count = 0
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in established:
            count += 1
    return count


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (a worker supervisor's processes)."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
            for child in map(int, text):
                found += [child, *children(child)]
    except OSError:
        pass
    return found


@dataclass
class Sampler:
    """RSS and connections of every process of a cluster, over time."""

    cluster: Cluster
    rows: list[tuple[float, dict[str, tuple[float | None, int | None]]]] = field(
        default_factory=list
    )
    started: float = field(default_factory=time.monotonic)

    def processes(self) -> dict[str, int]:
        found = {}
        for role, pid in self.cluster.pids().items():
            found[role] = pid
            for n, child in enumerate(children(pid)):
                found[f"{role}/{n}"] = child
        return found

    def sample(self) -> None:
        established = established_inodes()
        row = {role: (rss_mib(pid), connections(pid, established))
               for role, pid in self.processes().items()}  # fmt: skip
        minutes = (time.monotonic() - self.started) / 60
        if not self.rows:
            print("minute  " + "  ".join(f"{r:>18}" for r in row), flush=True)
            print("        " + "  ".join(f"{'RSS MiB / conns':>18}" for _ in row), flush=True)
        self.rows.append((minutes, row))
        cells = [f"{_num(rss, '.1f'):>9} / {_num(conns, 'd'):<6}" for rss, conns in row.values()]
        print(f"{minutes:6.1f}  " + "  ".join(f"{c:>18}" for c in cells), flush=True)

    async def run(self, every: float) -> None:
        n = 0
        while True:
            self.sample()
            if n % 10 == 0:
                await self.caches()
            n += 1
            await asyncio.sleep(every)

    async def caches(self) -> None:
        """Each web process's bounded caches (``notifier_cache_entries``): RSS that grows
        while they fill is not a leak once they are full."""
        parts = []
        key = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(timeout=5) as http:
            for web in self.cluster.webs:
                try:
                    response = await http.get(f"{web.http}/metrics", headers=key)
                except httpx.HTTPError:
                    continue
                found = {m[1]: int(float(m[2])) for m in _CACHE.finditer(response.text)}
                parts.append(f"web-{web.port} " + " ".join(f"{k}={v}" for k, v in found.items()))
        if parts:
            print("        caches: " + "; ".join(parts), flush=True)

    def verdict(self, warmup: float) -> tuple[bool, list[str]]:
        """Whether every process's RSS stayed flat after ``warmup`` minutes, and why."""
        warm = [(m, row) for m, row in self.rows if m >= warmup]
        if len(warm) < 2:
            return False, [f"too few samples after the {warmup:.1f} min warm-up to judge"]
        lines, flat = [], True
        for role in warm[0][1]:
            series = [(m, row[role][0]) for m, row in warm if row.get(role, (None,))[0]]
            if len(series) < 2:
                continue
            first = min(v for _, v in series[:2] if v is not None)
            last = max(v for _, v in series[-2:] if v is not None)
            slope = _slope([(m, v) for m, v in series if v is not None])
            allowed = max(first * FLAT_SHARE, FLAT_MIB)
            ok = last - first <= allowed and slope * 60 <= allowed
            flat = flat and ok
            lines.append(f"{role:>16}: {first:7.1f} -> {last:7.1f} MiB after warm-up "
                         f"({slope:+.2f} MiB/min, allowed {allowed:.1f} MiB): "
                         f"{'flat' if ok else 'GROWING'}")  # fmt: skip
        return flat, lines


def _num(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares MiB per minute."""
    n = len(points)
    mx = sum(m for m, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((m - mx) ** 2 for m, _ in points)
    return 0.0 if var == 0 else sum((m - mx) * (v - my) for m, v in points) / var


async def soak(cluster: Cluster, args: argparse.Namespace) -> int:
    size = Size(users=args.users, tabs=args.tabs, rounds=0, live_cap=args.live_cap)
    replay = f"scripts/soak --minutes {args.minutes:g} --seed {args.seed}"
    options = Options(args.seed, size, label="soak", replay=replay)
    print(f"soak: {args.minutes} min, seed {args.seed}, {len(cluster.webs)} web and "
          f"{len(cluster.workers.procs)} worker processes, logs in {cluster.folder}",
          flush=True)  # fmt: skip
    sampler = Sampler(cluster)
    sampling = asyncio.create_task(sampler.run(args.sample))
    try:
        report = await Driver(cluster, options).run(
            None, until=time.monotonic() + args.minutes * 60
        )
    finally:
        sampling.cancel()
    sampler.sample()
    print()
    print(report.text())
    warmup = args.warmup if args.warmup is not None else max(1.0, args.minutes / 3)
    flat, lines = sampler.verdict(warmup)
    print(f"\nRSS after a {warmup:.1f} min warm-up:")
    print("\n".join(lines))
    print(f"\nsoak: {'clean' if not report.failed else 'FINDINGS'}, "
          f"RSS {'flat' if flat else 'NOT flat'}")  # fmt: skip
    if report.failed:
        print(f"\nlogs in {cluster.folder}; their tails:\n{cluster.tails()}")
    return 0 if flat and not report.failed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, required=True, help="how long to drive")
    parser.add_argument("--seed", type=int, default=random.SystemRandom().randrange(1, 10**6))
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, help="minutes before RSS must be flat "
                        "(default: a third of the run, at least 1)")  # fmt: skip
    parser.add_argument("--webs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--users", type=int, default=36)
    parser.add_argument("--tabs", type=int, default=24)
    parser.add_argument("--live-cap", type=int, default=400,
                        help="live activities kept; older ones are removed")  # fmt: skip
    args = parser.parse_args(argv)
    with running(webs=args.webs, workers=args.workers) as cluster:
        return asyncio.run(soak(cluster, args))


if __name__ == "__main__":
    sys.exit(main())
