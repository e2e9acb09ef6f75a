"""Push benchmark: activity posted → websocket frame at each of N connected followers.

Two servers measured in the same run by the same client swarm (one process, real
``websockets`` clients):

- **notifier**: redis-server, ``notifier serve`` and ``notifier worker`` as OS processes; N
  users follow ``ana`` and hold a websocket subscribed to their timeline; an activity by ``ana``
  is POSTed; the clock runs from just before the POST to each client's frame (so it includes
  the HTTP call, the broker, the worker's fanout writes, pub/sub and the push);
- **raw**: a bare ``websockets`` server (notifier/bench/raw_ws.py) broadcasting a frame of the
  same size to the same number of clients, from just before the trigger message.

Each server gets one unmeasured warm-up round first (first-use costs aside: script loading,
first frames, lazily built state), then ``rounds`` measured ones.

Also reported: server memory per idle connection (RSS growth over N connections / N) and
server CPU per delivered frame. Run: ``notifier bench push --clients 1000``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import sys
import time
from dataclasses import dataclass, field

import httpx
from websockets.asyncio.client import ClientConnection, connect

from notifier.bench.procs import (
    SECRET,
    StackRunner,
    cpu_seconds,
    free_port,
    percentile,
    processes,
    ratio,
    rss_kib,
    spawn,
    wait_port,
)
from notifier.web.auth import UserTokens


@dataclass
class PushResult:
    """One server's figures over all rounds."""

    name: str
    clients: int
    rounds: int
    p50_ms: float
    p99_ms: float
    deliveries_per_s: float
    """Median over rounds of clients / (last frame - start)."""
    rss_per_connection_kib: float
    cpu_us_per_frame: float
    """Server process CPU (user + system) per delivered frame."""
    worker_cpu_us_per_frame: float | None = None
    frame_bytes: int = 0
    lost: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)


class Swarm:
    """N websocket clients that timestamp every frame they receive."""

    def __init__(self) -> None:
        self.conns: list[ClientConnection] = []
        self.stamps: list[list[tuple[float, str]]] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self, url: str, n: int, hello: list[list[str]] | None = None) -> None:
        """Connect ``n`` clients (each sending its ``hello`` messages and awaiting one reply
        per message), then start their receive loops."""
        sem = asyncio.Semaphore(50)

        async def one(i: int) -> ClientConnection:
            async with sem:
                ws = await connect(url, compression=None, open_timeout=60, max_size=2**20)
                for message in hello[i] if hello else []:
                    await ws.send(message)
                    await ws.recv()
                return ws

        self.conns = list(await asyncio.gather(*(one(i) for i in range(n))))
        self.stamps = [[] for _ in self.conns]
        self._tasks = [asyncio.create_task(self._listen(i)) for i in range(n)]
        # The clients are most of what this (the measuring) process holds, ~130 objects each,
        # and they live until close(): frozen, a full collection no longer scans them. It did,
        # for 50-170 ms at 1,000 clients, and every frame arriving meanwhile was stamped that
        # much late, the measuring process's pause timed as the server's latency.
        gc.collect()
        gc.freeze()

    async def _listen(self, i: int) -> None:
        stamps = self.stamps[i]
        async for message in self.conns[i]:
            stamps.append((time.perf_counter(), str(message)))

    async def arrivals(self, start: float, match: str, n: int, within: float) -> list[float]:
        """Seconds from ``start`` to the first frame containing ``match``, per client that got
        one within ``within`` seconds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            got = [self._first(s, start, match) for s in self.stamps]
            if sum(g is not None for g in got) >= n:
                break
            await asyncio.sleep(0.02)
        found = [self._first(s, start, match) for s in self.stamps]
        return [g for g in found if g is not None]

    @staticmethod
    def _first(stamps: list[tuple[float, str]], start: float, match: str) -> float | None:
        for at, text in stamps:
            if at >= start and match in text:
                return at - start
        return None

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in self.conns), return_exceptions=True)
        gc.unfreeze()  # the closed clients are garbage now


def _summarise(
    name: str,
    clients: int,
    per_round: list[list[float]],
    rss_kib: float,
    cpu_s: float,
    worker_cpu_s: float | None,
    frame_bytes: int,
) -> PushResult:
    latencies = sorted(ms * 1000 for round_ in per_round for ms in round_)
    delivered = len(latencies)
    rates = [len(r) / max(r) for r in per_round if r]
    return PushResult(
        name=name,
        clients=clients,
        rounds=len(per_round),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        deliveries_per_s=statistics.median(rates) if rates else 0.0,
        rss_per_connection_kib=rss_kib / clients,
        cpu_us_per_frame=cpu_s / max(delivered, 1) * 1e6,
        worker_cpu_us_per_frame=(
            None if worker_cpu_s is None else worker_cpu_s / max(delivered, 1) * 1e6
        ),
        frame_bytes=frame_bytes,
        lost=clients * len(per_round) - delivered,
        latencies_ms=latencies,
    )


async def bench_raw(clients: int, rounds: int, frame: str) -> PushResult:
    """The baseline: the same swarm, a bare websockets broadcast of ``frame``."""
    port = free_port()
    with processes() as procs:
        proc = spawn([sys.executable, "-m", "notifier.bench.raw_ws", str(port)])
        procs.append(proc)
        await wait_port(port, proc)
        url = f"ws://127.0.0.1:{port}"
        control = await connect(url, compression=None)
        await asyncio.sleep(0.2)
        before = rss_kib(proc.pid)
        swarm = Swarm()
        await swarm.open(url, clients)
        await asyncio.sleep(0.5)
        grown = rss_kib(proc.pid) - before
        per_round: list[list[float]] = []
        cpu0 = cpu_seconds(proc.pid)
        for r in range(-1, rounds):  # round -1 warms up and is not counted
            marker = f'"round":"raw{r}"'
            payload = frame.replace('"round":"x"', marker)
            start = time.perf_counter()
            await control.send("go:" + payload)
            arrived = await swarm.arrivals(start, marker, clients, 30)
            if r < 0:
                cpu0 = cpu_seconds(proc.pid)
            else:
                per_round.append(arrived)
            await asyncio.sleep(0.3)
        cpu = cpu_seconds(proc.pid) - cpu0
        await swarm.close()
        await control.close()
    return _summarise("raw websockets", clients, per_round, grown, cpu, None, len(frame))


async def bench_notifier(clients: int, rounds: int) -> tuple[PushResult, str]:
    """notifier on Redis; returns the result and one real frame (for the baseline's size)."""
    async with StackRunner(env={"NOTIFIER_WS_MAX_PER_USER": "5"}) as stack:
        users = [f"f{i:05d}" for i in range(clients)]
        async with httpx.AsyncClient(base_url=stack.http_url, timeout=60) as http:
            await follow_all(http, stack.headers, users, "ana")
            tokens = UserTokens(SECRET, 3600, 3600)
            hello = [
                [
                    json.dumps({"type": "auth", "token": tokens.issue(u)[0]}),
                    json.dumps({"type": "subscribe", "feed": "timeline", "limit": 1}),
                ]
                for u in users
            ]
            warm = await connect(stack.ws_url, compression=None)  # first-connection costs aside
            await warm.send(hello[0][0])
            await warm.recv()
            await asyncio.sleep(0.5)
            before = rss_kib(stack.web.pid)
            swarm = Swarm()
            await swarm.open(stack.ws_url, clients, hello)
            await asyncio.sleep(1.0)
            grown = rss_kib(stack.web.pid) - before
            per_round: list[list[float]] = []
            worker = stack.workers[0].pid
            cpu0, wcpu0 = cpu_seconds(stack.web.pid), cpu_seconds(worker)
            frame = ""
            for n in range(-1, rounds):  # round -1 warms up and is not counted
                marker = f"bench:{n}"
                activity = {"actor": "ana", "verb": "post", "object": marker}
                start = time.perf_counter()
                response = await http.post("/v1/activities", json=activity, headers=stack.headers)
                response.raise_for_status()
                arrived = await swarm.arrivals(start, marker, clients, 60)
                if n < 0:
                    cpu0, wcpu0 = cpu_seconds(stack.web.pid), cpu_seconds(worker)
                else:
                    per_round.append(arrived)
                if not frame and n >= 0:
                    frame = next(t for s in swarm.stamps for _, t in s if marker in t)
                await asyncio.sleep(0.3)
            cpu, wcpu = cpu_seconds(stack.web.pid) - cpu0, cpu_seconds(worker) - wcpu0
            await swarm.close()
            await warm.close()
    result = _summarise("notifier", clients, per_round, grown, cpu, wcpu, len(frame))
    return result, frame


async def follow_all(
    http: httpx.AsyncClient, headers: dict[str, str], users: list[str], target: str
) -> None:
    """Make every user follow ``target`` through the server API (no backfill)."""
    sem = asyncio.Semaphore(20)

    async def follow(user: str) -> None:
        async with sem:
            body = {"user": user, "target": target, "backfill": 0}
            response = await http.post("/v1/follows", json=body, headers=headers)
            response.raise_for_status()

    await asyncio.gather(*(follow(u) for u in users))


@dataclass
class ConnectionsResult:
    """Server memory held per idle connection (RSS growth over ``connections`` / count)."""

    name: str
    connections: int
    kib_per_connection: float


async def bench_connections(connections: int) -> list[ConnectionsResult]:
    """``connections`` idle clients on notifier (authenticated, subscribed to their badge
    counts, the widget's resting state) and on a bare websockets server, one after the other."""
    async with StackRunner(workers=0) as stack:
        tokens = UserTokens(SECRET, 3600, 3600)
        hello = [
            [
                json.dumps({"type": "auth", "token": tokens.issue(f"c{i:06d}")[0]}),
                json.dumps({"type": "subscribe", "feed": "notification", "limit": 0}),
            ]
            for i in range(connections)
        ]
        mine = await _idle_growth(stack.web.pid, stack.ws_url, hello)
    port = free_port()
    with processes() as procs:
        raw = spawn([sys.executable, "-m", "notifier.bench.raw_ws", str(port)])
        procs.append(raw)
        await wait_port(port, raw)
        theirs = await _idle_growth(raw.pid, f"ws://127.0.0.1:{port}", None, connections)
    return [
        ConnectionsResult("notifier", connections, mine / connections),
        ConnectionsResult("raw websockets", connections, theirs / connections),
    ]


def connections_table(results: list[ConnectionsResult]) -> str:
    """Memory per idle connection, with the notifier / raw ratio."""
    rows = [f"{'server':<16} {'connections':>11} {'KiB/conn':>9}"]
    rows += [f"{r.name:<16} {r.connections:>11,} {r.kib_per_connection:>9.1f}" for r in results]
    if len(results) == 2:
        mine, raw = results
        rows.append(
            f"ratio notifier/raw: {ratio(mine.kib_per_connection, raw.kib_per_connection)}"
            " (server RSS growth while the idle swarm connected, / connections)"
        )
    return "\n".join(rows)


async def _idle_growth(
    pid: int, url: str, hello: list[list[str]] | None, count: int | None = None
) -> int:
    """RSS growth of ``pid``, KiB, while a swarm connects and settles."""
    warm = await connect(url, compression=None)
    if hello:
        await warm.send(hello[0][0])
        await warm.recv()
    await asyncio.sleep(0.5)
    before = rss_kib(pid)
    swarm = Swarm()
    await swarm.open(url, len(hello) if hello else count or 0, hello)
    await asyncio.sleep(2.0)
    grown = rss_kib(pid) - before
    await swarm.close()
    await warm.close()
    return grown


def _baseline_frame(frame: str) -> str:
    """A frame of the same length as notifier's, with a round marker the swarm can find."""
    marker = '{"round":"x","pad":"'
    pad = max(0, len(frame) - len(marker) - 2)
    return marker + "p" * pad + '"}'


async def run(clients: int, rounds: int) -> list[PushResult]:
    """Both servers, notifier first (its real frame sizes the baseline's)."""
    mine, frame = await bench_notifier(clients, rounds)
    raw = await bench_raw(clients, rounds, _baseline_frame(frame))
    return [mine, raw]


def table(results: list[PushResult]) -> str:
    """The figures, with notifier / raw ratios."""
    rows = [
        f"{'server':<16} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} {'deliv/s':>9} "
        f"{'KiB/conn':>9} {'CPU µs/frame':>13} {'lost':>5}"
    ]
    for r in results:
        worker = f" (+worker {r.worker_cpu_us_per_frame:.0f})" if r.worker_cpu_us_per_frame else ""
        rows.append(
            f"{r.name:<16} {r.clients:>7} {r.p50_ms:>8.1f} {r.p99_ms:>8.1f} "
            f"{r.deliveries_per_s:>9.0f} {r.rss_per_connection_kib:>9.1f} "
            f"{r.cpu_us_per_frame:>13.1f} {r.lost:>5}{worker}"
        )
    if len(results) == 2:
        a, b = results
        rows.append(
            f"ratio notifier/raw: p50 {ratio(a.p50_ms, b.p50_ms)}, p99 "
            f"{ratio(a.p99_ms, b.p99_ms)}, deliveries/s "
            f"{ratio(a.deliveries_per_s, b.deliveries_per_s)}, memory/conn "
            f"{ratio(a.rss_per_connection_kib, b.rss_per_connection_kib)}, CPU/frame "
            f"{ratio(a.cpu_us_per_frame, b.cpu_us_per_frame)} (frame {a.frame_bytes} bytes)"
        )
    return "\n".join(rows)
