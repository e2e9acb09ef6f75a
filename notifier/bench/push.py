"""Push benchmark: activity posted → websocket frame at each of N connected followers.

Two servers measured in the same run by the same client swarm (one process, real
``websockets`` clients):

- **notifier**: redis-server, ``notifier serve`` and ``notifier worker`` as OS processes; N
  users follow ``ana`` and hold a websocket subscribed to their timeline; an activity by ``ana``
  is POSTed; the clock runs from just before the POST to each client's frame (so it includes
  the HTTP call, the broker, the worker's fanout writes, pub/sub and the push);
- **raw**: a bare ``websockets`` server (notifier/bench/raw_ws.py) broadcasting a frame of the
  same size to the same number of clients, from just before the trigger message.

Also reported: server memory per idle connection (RSS growth over N connections / N) and
server CPU per delivered frame. Run: ``python -m notifier.bench.push --clients 1000``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect

from notifier.web.auth import UserTokens

SECRET = "bench-secret-" + "x" * 32
API_KEY = "bench-api-key-0123456789"


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


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_port(port: int, proc: subprocess.Popen[bytes], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


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
        p50_ms=_pct(latencies, 50),
        p99_ms=_pct(latencies, 99),
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


def _pct(values: list[float], pct: int) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(pct / 100 * (len(values) - 1)))]


def _spawn(
    args: list[str], *, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a server process (output to ``log``, or discarded)."""
    with log.open("wb") if log else open(os.devnull, "wb") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


@contextmanager
def _processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


async def bench_raw(clients: int, rounds: int, frame: str) -> PushResult:
    """The baseline: the same swarm, a bare websockets broadcast of ``frame``."""
    port = _free_port()
    with _processes() as procs:
        proc = _spawn([sys.executable, "-m", "notifier.bench.raw_ws", str(port)])
        procs.append(proc)
        await _wait_port(port, proc)
        url = f"ws://127.0.0.1:{port}"
        control = await connect(url, compression=None)
        await asyncio.sleep(0.2)
        before = _rss_kib(proc.pid)
        swarm = Swarm()
        await swarm.open(url, clients)
        await asyncio.sleep(0.5)
        grown = _rss_kib(proc.pid) - before
        per_round: list[list[float]] = []
        cpu0 = _cpu_s(proc.pid)
        for r in range(rounds):
            marker = f'"round":"raw{r}"'
            payload = frame.replace('"round":"x"', marker)
            start = time.perf_counter()
            await control.send("go:" + payload)
            per_round.append(await swarm.arrivals(start, marker, clients, 30))
            await asyncio.sleep(0.3)
        cpu = _cpu_s(proc.pid) - cpu0
        await swarm.close()
        await control.close()
    return _summarise("raw websockets", clients, per_round, grown, cpu, None, len(frame))


async def bench_notifier(clients: int, rounds: int) -> tuple[PushResult, str]:
    """notifier on Redis; returns the result and one real frame (for the baseline's size)."""
    redis = shutil.which("redis-server")
    if redis is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    tmp = Path(tempfile.mkdtemp(prefix="notifier-bench-"))
    redis_port, web_port = _free_port(), _free_port()
    url = f"redis://127.0.0.1:{redis_port}/0"
    (tmp / "notifier.toml").write_text(f'[storage]\nurl = "{url}"\nprefix = "bench"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(
        NOTIFIER_CONFIG=str(tmp / "notifier.toml"),
        NOTIFIER_SECRET=SECRET,
        NOTIFIER_API_KEYS=API_KEY,
        NOTIFIER_WS_MAX_PER_USER="5",
    )
    cli = [sys.executable, "-m", "notifier.cli"]
    with _processes() as procs:
        r = _spawn(
            [redis, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp), "--maxclients", "20000"],
        )  # fmt: skip
        procs.append(r)
        await _wait_port(redis_port, r)
        web = _spawn([*cli, "serve", "--port", str(web_port), "--log-level", "warning"],
                     env=env, log=tmp / "web.log")  # fmt: skip
        worker = _spawn([*cli, "worker", "--processes", "1"], env=env, log=tmp / "worker.log")
        procs += [web, worker]
        await _wait_port(web_port, web)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        users = [f"f{i:05d}" for i in range(clients)]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}", timeout=60) as http:
            sem = asyncio.Semaphore(20)

            async def follow(user: str) -> None:
                async with sem:
                    body = {"user": user, "target": "ana", "backfill": 0}
                    response = await http.post("/v1/follows", json=body, headers=headers)
                    response.raise_for_status()

            await asyncio.gather(*(follow(u) for u in users))
            tokens = UserTokens(SECRET, 3600, 3600)
            hello = [
                [
                    json.dumps({"type": "auth", "token": tokens.issue(u)[0]}),
                    json.dumps({"type": "subscribe", "feed": "timeline", "limit": 1}),
                ]
                for u in users
            ]
            ws_url = f"ws://127.0.0.1:{web_port}/v1/realtime"
            warm = await connect(ws_url, compression=None)  # first-connection costs aside
            await warm.send(hello[0][0])
            await warm.recv()
            await asyncio.sleep(0.5)
            before = _rss_kib(web.pid)
            swarm = Swarm()
            await swarm.open(ws_url, clients, hello)
            await asyncio.sleep(1.0)
            grown = _rss_kib(web.pid) - before
            per_round: list[list[float]] = []
            cpu0, wcpu0 = _cpu_s(web.pid), _cpu_s(worker.pid)
            frame = ""
            for n in range(rounds):
                marker = f"bench:{n}"
                activity = {"actor": "ana", "verb": "post", "object": marker}
                start = time.perf_counter()
                response = await http.post("/v1/activities", json=activity, headers=headers)
                response.raise_for_status()
                per_round.append(await swarm.arrivals(start, marker, clients, 60))
                if not frame:
                    frame = next(t for s in swarm.stamps for _, t in s if marker in t)
                await asyncio.sleep(0.3)
            cpu, wcpu = _cpu_s(web.pid) - cpu0, _cpu_s(worker.pid) - wcpu0
            await swarm.close()
            await warm.close()
    shutil.rmtree(tmp, ignore_errors=True)
    result = _summarise("notifier", clients, per_round, grown, cpu, wcpu, len(frame))
    return result, frame


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
            f"ratio notifier/raw: p50 {_ratio(a.p50_ms, b.p50_ms)}, p99 "
            f"{_ratio(a.p99_ms, b.p99_ms)}, deliveries/s "
            f"{_ratio(a.deliveries_per_s, b.deliveries_per_s)}, memory/conn "
            f"{_ratio(a.rss_per_connection_kib, b.rss_per_connection_kib)}, CPU/frame "
            f"{_ratio(a.cpu_us_per_frame, b.cpu_us_per_frame)} (frame {a.frame_bytes} bytes)"
        )
    return "\n".join(rows)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a (baseline below the clock's resolution)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.clients, args.rounds))
    if args.json:
        print(json.dumps([{k: v for k, v in asdict(r).items() if k != "latencies_ms"}
                          for r in results], indent=2))  # fmt: skip
    else:
        print(table(results))


if __name__ == "__main__":
    main()
