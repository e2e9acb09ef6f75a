"""Feed-read benchmark: requests per second of the first page of a notification feed.

Two servers measured in the same run by the same load tool, `wrk`_ (closed loop: each
connection sends its next request when the previous answer arrives):

- **notifier**: ``notifier serve`` on the memory backend, seeded through the server API with a
  user whose notification feed has more groups than a page; the request is
  ``GET /v1/me/feeds/notification`` with that user's token: the first page, 25 aggregated
  groups with their activities and the unseen / unread counts;
- **baselines** (notifier/bench/raw_http.py), sending the page notifier returned, byte for byte:
  a minimal Starlette JSON endpoint (``JSONResponse(page)``, serialised per request with the
  standard library's ``json``), and the same route returning the page encoded once (uvicorn,
  routing and moving the bytes: the floor for a response of this size).

Each is one uvicorn process with ``notifier serve``'s options (log level ``warning`` for both:
the default ``info`` writes an access-log line per request). The per-user rate limit is raised
for the run, otherwise wrk would measure 429s; the limiter still runs on every request.
Repetitions alternate between the servers; the table shows the median over repetitions of
each run's req/s, p50 and p99 (wrk's latency histogram), and server CPU per request.
Run: ``python -m notifier.bench.http_read``.

.. _wrk: https://github.com/wg/wrk (Debian package ``wrk``)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from notifier.bench.procs import (
    API_KEY,
    SECRET,
    cpu_seconds,
    free_port,
    processes,
    redis_command,
    spawn,
)

USER = "bo"
FEED_PATH = "/v1/me/feeds/notification"
BASELINES = {
    "/json": "starlette JSON",
    "/bytes": "starlette bytes",
}
"""Baseline routes of raw_http.py and their names in the table; the first is the reference."""
PAGE_GROUPS = 25

# wrk calls done() once at the end; one JSON line is easier to trust than its text report.
WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p99_us": %d, '
    .. '"max_us": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d, "non_2xx": %d}\\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.timeout, e.status))
end
"""


@dataclass(frozen=True)
class LoadSettings:
    """How hard and how long wrk pushes each server (wrk takes whole seconds)."""

    threads: int = 2
    connections: int = 64
    duration_s: int = 5
    repetitions: int = 3
    warmup_s: int = 1
    """One unmeasured run per server first (first-request costs, caches); 0 skips it."""


@dataclass(frozen=True)
class WrkRun:
    """One wrk run against one server."""

    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int
    """Connect, read, write errors and timeouts."""
    non_2xx: int
    server_cpu_s: float
    """User + system CPU of the server process during the run."""

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


@dataclass
class ReadResult:
    """One server's runs; figures are medians over the repetitions."""

    name: str
    path: str
    body_bytes: int
    runs: list[WrkRun] = field(default_factory=list)

    @property
    def requests_per_s(self) -> float:
        return statistics.median(r.requests_per_s for r in self.runs)

    @property
    def p50_ms(self) -> float:
        return statistics.median(r.p50_ms for r in self.runs)

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_ms for r in self.runs)

    @property
    def cpu_us_per_request(self) -> float:
        return statistics.median(r.server_cpu_s / max(r.requests, 1) * 1e6 for r in self.runs)

    def summary(self) -> dict[str, Any]:
        """The figures as plain data (for ``--json`` and later ``notifier bench``)."""
        return {
            "name": self.name,
            "path": self.path,
            "body_bytes": self.body_bytes,
            "requests_per_s": self.requests_per_s,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "cpu_us_per_request": self.cpu_us_per_request,
            "runs": [asdict(r) | {"requests_per_s": r.requests_per_s} for r in self.runs],
        }


@dataclass
class ReadBench:
    """Every server's results, measured in one run with the same load."""

    notifier: ReadResult
    baselines: list[ReadResult]
    """The reference baseline (a minimal JSON endpoint) first."""
    load: LoadSettings
    groups: int
    """Groups in the user's notification feed (the page shows the newest PAGE_GROUPS)."""
    backend: str = "memory"
    stored: int = 0
    """Older activities preloaded into the feed (and activity storage) before measuring."""

    @property
    def baseline(self) -> ReadResult:
        """The reference baseline: a minimal Starlette JSON endpoint."""
        return self.baselines[0]

    def ratio(self, baseline: ReadResult | None = None) -> float:
        """notifier req/s over a baseline's req/s (the reference baseline's by default)."""
        base = (baseline or self.baseline).requests_per_s
        return self.notifier.requests_per_s / base if base else float("nan")

    def summary(self) -> dict[str, Any]:
        """The figures as plain data."""
        return {
            "scenario": "http_read",
            "load": asdict(self.load),
            "groups": self.groups,
            "backend": self.backend,
            "stored": self.stored,
            "results": [r.summary() for r in (self.notifier, *self.baselines)],
            "ratio_requests_per_s": {b.name: self.ratio(b) for b in self.baselines},
        }


# -- processes ---------------------------------------------------------------------------------


@contextmanager
def _server(
    args: list[str], env: Mapping[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process, terminated (then killed) on the way out whatever happens."""
    with processes() as procs:
        procs.append(spawn(args, env=env, log=log))
        yield procs[0]


def _wait_tcp(port: int, proc: subprocess.Popen[bytes], within: float = 10) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def _request(
    url: str, *, body: Any = None, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=dict(headers or {}))
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status), bytes(response.read())


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{log.read_text()}")
        try:
            _request(url)
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} does not answer after {within}s:\n{log.read_text()}")


# -- seeding -----------------------------------------------------------------------------------


def seed(base_url: str, groups: int, actors_per_group: int) -> str:
    """Fill ``USER``'s notification feed with ``groups`` groups of likes (one photo each, by
    ``actors_per_group`` users) through the server API; returns a user token for ``USER``."""
    key = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    activities = [
        {
            "actor": f"u{a:03d}",
            "verb": "like",
            "object": f"like:{g}:{a}",
            "target": f"photo:{g}",
            "to": [f"notification:{USER}"],
            "extra": {"url": f"/photos/{g}", "avatar": f"/avatars/u{a:03d}.png"},
        }
        for g in range(groups)
        for a in range(actors_per_group)
    ]
    status, _ = _request(f"{base_url}/v1/activities/batch", body={"activities": activities},
                         headers=key)  # fmt: skip
    if status != 201:
        raise RuntimeError(f"seeding answered {status}")
    _, raw = _request(f"{base_url}/v1/tokens", body={"user": USER}, headers=key)
    return str(json.loads(raw)["token"])


# -- load --------------------------------------------------------------------------------------


def wrk(
    url: str,
    load: LoadSettings,
    duration_s: int,
    headers: Mapping[str, str],
    pid: int,
    script: Path,
) -> WrkRun:
    """One wrk run against ``url``; ``pid`` is the server whose CPU time is recorded."""
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    args = [binary, f"-t{load.threads}", f"-c{load.connections}", f"-d{duration_s}s",
            "--timeout", "10s", "-s", str(script)]  # fmt: skip
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    cpu0 = cpu_seconds(pid)
    done = subprocess.run([*args, url], capture_output=True, text=True)
    cpu = cpu_seconds(pid) - cpu0
    if done.returncode:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stdout}{done.stderr}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("WRK_JSON ")]
    if not lines:
        raise RuntimeError(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")
    raw = json.loads(lines[-1].removeprefix("WRK_JSON "))
    return WrkRun(
        requests=raw["requests"],
        duration_s=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1e3,
        p99_ms=raw["p99_us"] / 1e3,
        max_ms=raw["max_us"] / 1e3,
        socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
        non_2xx=raw["non_2xx"],
        server_cpu_s=cpu,
    )


def _check_page(body: bytes) -> dict[str, Any]:
    page: dict[str, Any] = json.loads(body)
    if len(page.get("groups", ())) != PAGE_GROUPS or "counts" not in page:
        raise RuntimeError(f"not a full notification page: {body[:200]!r}")
    return page


def preload(redis_url: str, stored: int, progress: Any = None) -> None:
    """Store ``stored`` older activities in ``USER``'s notification feed, straight through
    the storage API (the server API would take minutes for a million): likes by 1,000 users
    on 1,000 photos, so the feed is a hot user's: its 100 groups each count ~1,000 likes."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    from notifier.config import Config
    from notifier.feeds import entries_for
    from notifier.service import Notifier

    async def fill() -> None:
        app = Notifier(Config(storage_url=redis_url))
        group = app.config.feeds["notification"]
        start = datetime.now(UTC) - timedelta(days=30)
        try:
            for first in range(0, stored, 1000):
                batch = [
                    app.activity(
                        actor=f"p{n % 1000:03d}",
                        verb="like",
                        object=f"old:{n}",
                        target=f"photo:old{n % 1000}",
                        time=start + timedelta(milliseconds=n),
                    )
                    for n in range(first, min(first + 1000, stored))
                ]
                await app.storage.put_activities(batch)
                await app.storage.add_to_feeds(group, [USER], entries_for(group, batch))
                if progress and (first // 1000) % 100 == 0:
                    progress(f"read: stored {first + len(batch):,} / {stored:,} activities")
        finally:
            await app.close()

    asyncio.run(fill())


def run(
    load: LoadSettings | None = None,
    *,
    groups: int = 30,
    actors_per_group: int = 3,
    backend: str = "memory",
    stored: int = 0,
    progress: Any = None,
) -> ReadBench:
    """Start notifier (memory backend, or Redis with ``stored`` older activities preloaded)
    and the baseline server, seed notifier, then alternate wrk runs.

    Raises RuntimeError if a server fails to start or any measured request is not a 2xx
    (the figures would describe errors, not reads).
    """
    load = load or LoadSettings()
    if stored and backend != "redis":
        raise ValueError("stored activities are preloaded on the redis backend only")
    if groups < PAGE_GROUPS:
        raise ValueError(f"groups must be at least {PAGE_GROUPS} (one full page)")
    tmp = Path(tempfile.mkdtemp(prefix="notifier-bench-read-"))
    script = tmp / "summary.lua"
    script.write_text(WRK_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    notifier_port, baseline_port = free_port(), free_port()
    notifier_env = env | {
        "NOTIFIER_SECRET": SECRET,
        "NOTIFIER_API_KEYS": API_KEY,
        "NOTIFIER_USER_RATE": "1000000000",
        "NOTIFIER_USER_BURST": "1000000000",
    }
    serve = [sys.executable, "-m", "notifier.cli", "serve", "--port", str(notifier_port),
             "--log-level", "warning"]  # fmt: skip
    try:
        with ExitStack() as running:
            if backend == "redis":
                redis_port = free_port()
                redis = running.enter_context(
                    _server(redis_command(redis_port, tmp), env, tmp / "redis.log")
                )
                url = f"redis://127.0.0.1:{redis_port}/0"
                _wait_tcp(redis_port, redis)
                notifier_env["NOTIFIER_STORAGE_URL"] = url
                if stored:
                    preload(url, stored, progress)
            notifier = running.enter_context(_server(serve, notifier_env, tmp / "notifier.log"))
            base = f"http://127.0.0.1:{notifier_port}"
            _wait_http(f"{base}/healthz", notifier, tmp / "notifier.log")
            token = seed(base, groups, actors_per_group)
            auth = {"Authorization": f"Bearer {token}"}
            _, body = _request(base + FEED_PATH, headers=auth)
            (tmp / "page.json").write_text(json.dumps(_check_page(body)))
            raw = [sys.executable, "-m", "notifier.bench.raw_http", str(baseline_port),
                   str(tmp / "page.json")]  # fmt: skip
            with _server(raw, env, tmp / "baseline.log") as baseline:
                other = f"http://127.0.0.1:{baseline_port}"
                _wait_http(other + next(iter(BASELINES)), baseline, tmp / "baseline.log")
                mine = ReadResult("notifier feed page", FEED_PATH, len(body))
                targets = [(mine, base + FEED_PATH, notifier.pid)]
                for path, name in BASELINES.items():
                    _, sent = _request(other + path, headers=auth)
                    targets.append((ReadResult(name, path, len(sent)), other + path, baseline.pid))
                if load.warmup_s:
                    for _, url, pid in targets:
                        wrk(url, load, load.warmup_s, auth, pid, script)
                for _ in range(load.repetitions):
                    for result, url, pid in targets:
                        measured = wrk(url, load, load.duration_s, auth, pid, script)
                        if measured.non_2xx:
                            raise RuntimeError(f"{result.name}: {measured.non_2xx} non-2xx")
                        result.runs.append(measured)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ReadBench(mine, [r for r, _, _ in targets[1:]], load, groups, backend, stored)


def table(bench: ReadBench) -> str:
    """The figures, with the notifier / baseline ratios."""
    load = bench.load
    rows = [
        f"{'scenario':<20} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/req':>11} "
        f"{'body B':>7}  req/s per repetition"
    ]
    for r in (bench.notifier, *bench.baselines):
        per_run = ", ".join(f"{run.requests_per_s:.0f}" for run in r.runs)
        rows.append(
            f"{r.name:<20} {r.requests_per_s:>8.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
            f"{r.cpu_us_per_request:>11.0f} {r.body_bytes:>7}  {per_run}"
        )
    a = bench.notifier
    for b in bench.baselines:
        rows.append(
            f"ratio notifier/{b.name}: req/s {_ratio(a.requests_per_s, b.requests_per_s)}, "
            f"p50 {_ratio(a.p50_ms, b.p50_ms)}, p99 {_ratio(a.p99_ms, b.p99_ms)}, "
            f"CPU/req {_ratio(a.cpu_us_per_request, b.cpu_us_per_request)}"
        )
    errors = sum(run.socket_errors for r in (a, *bench.baselines) for run in r.runs)
    rows.append(
        f"wrk -t{load.threads} -c{load.connections} -d{load.duration_s}s, "
        f"{load.repetitions} alternating repetitions (medians), {bench.groups} groups in the "
        f"feed, first page of {PAGE_GROUPS}; socket errors: {errors}"
    )
    return "\n".join(rows)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    defaults = LoadSettings()
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--connections", type=int, default=defaults.connections)
    parser.add_argument("--duration", type=int, default=defaults.duration_s, help="seconds")
    parser.add_argument("--repetitions", type=int, default=defaults.repetitions)
    parser.add_argument("--groups", type=int, default=30, help="groups in the feed (>= 25)")
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")
    args = parser.parse_args(argv)
    load = LoadSettings(args.threads, args.connections, args.duration, args.repetitions)
    bench = run(load, groups=args.groups)
    print(json.dumps(bench.summary(), indent=2) if args.json else table(bench))


if __name__ == "__main__":
    main()
