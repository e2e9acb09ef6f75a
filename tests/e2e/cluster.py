"""The processes of an end-to-end run: a private redis-server, ``notifier serve`` x N and
``notifier worker`` x M on one TOML config of the test's own, each with its own log file
(both print a level name on every line, so ERROR lines can be found). A web process can be
added and one retired (SIGTERM) mid-run, as a deploy does; a retired one's log stays checked.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.cassandra_node import url as cassandra_url
from tests.e2e.world import BACKFILL_DEFAULT, feeds_toml
from tests.fanout.conftest import ROOT, WorkerPool
from tests.services import RedisServer, free_port, wait_for_port
from tests.web.conftest import API_KEY, ORIGIN, SECRET

LEVELLED = re.compile(r"^(\d{4}-\d\d-\d\d \S+ \d+ )?(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")
CHAINED = ("During handling of the above exception", "The above exception was the direct")
RESTART_WINDOW = 2.0
"""``ws_restart_window`` of the web processes, seconds: a restarted process's clients come back
within it (10 s by default; small here so that a run stays short)."""
CLEAN_EXITS = (0, -signal.SIGTERM, 128 + signal.SIGTERM)
"""How a web process ends on SIGTERM (uvicorn re-raises the signal after a graceful stop)."""


def config_toml(storage_url: str, prefix: str, broker_url: str | None) -> str:
    """The servers' configuration: small feeds (trims happen), fast fanout retries, a short
    restart window (in the file: ``start_web`` passes no ``NOTIFIER_*`` variable)."""
    broker = f'broker_url = "{broker_url}"\n' if broker_url else ""
    return f"""[storage]
url = "{storage_url}"
prefix = "{prefix}"

[server]
key_rate = 100000.0
key_burst = 100000
user_rate = 100000.0
user_burst = 100000
ws_restart_window = {RESTART_WINDOW}

{feeds_toml()}
[fanout]
{broker}namespace = "ns{prefix}"
chunk_size = 10
backfill_default = {BACKFILL_DEFAULT}
backfill_max = 100
threads = 4
poll_ms = 50
min_backoff_ms = 50
max_backoff_ms = 1000
heartbeat_timeout_ms = 5000
"""


@dataclass
class Web:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"


@dataclass
class Cluster:
    redis: RedisServer
    webs: list[Web]
    """The web processes that run (or should)."""
    workers: WorkerPool
    folder: Path
    storage_url: str
    config: Path
    extra_logs: list[Path] = field(default_factory=list)
    retired: list[Web] = field(default_factory=list)
    """Web processes sent SIGTERM by ``retire``: they should be gone (or going)."""

    @property
    def logs(self) -> list[Path]:
        webs = [w.log for w in self.webs + self.retired]
        return webs + list(self.workers.logs) + self.extra_logs

    async def add_web(self) -> Web:
        """Start one more web process on the cluster's config; returns once it listens."""
        web = await asyncio.to_thread(start_web, self.config, self.folder)
        self.webs.append(web)
        return web

    def retire(self, web: Web) -> None:
        """SIGTERM ``web``, as a deploy stops it: it should close its websockets with 1012 and
        exit (``CLEAN_EXITS``)."""
        self.webs.remove(web)
        self.retired.append(web)
        web.proc.send_signal(signal.SIGTERM)

    def pids(self) -> dict[str, int]:
        """Every process by role (for the soak's sampling)."""
        found = {f"web-{w.port}": w.proc.pid for w in self.webs}
        found.update({f"worker-{n}": p.pid for n, p in enumerate(self.workers.procs)})
        if self.redis.proc is not None:
            found["redis"] = self.redis.proc.pid
        return found

    def error_lines(self) -> list[str]:
        """ERROR / CRITICAL lines of every log, each with its file's name and, when a
        traceback follows, its last line (the exception); also tracebacks printed with no
        log line of a level before them (an error logged past the logging setup)."""
        found = []
        for log in self.logs:
            if log.exists():
                found += [f"{log.name}: {e}" for e in _errors(log.read_text(errors="replace"))]
        return found

    def tails(self, chars: int = 3000) -> str:
        parts = []
        for log in self.logs:
            text = log.read_text(errors="replace") if log.exists() else "(no log)"
            parts.append(f"--- {log.name} (last {chars} chars)\n{text[-chars:]}")
        return "\n".join(parts)

    def dead(self) -> list[str]:
        """Processes that exited while they should run."""
        procs = [(f"web-{w.port}", w.proc) for w in self.webs]
        procs += [(f"worker-{n}", p) for n, p in enumerate(self.workers.procs)]
        return [f"{name} exited with {p.returncode}" for name, p in procs if p.poll() is not None]


def start_web(config: Path, folder: Path) -> Web:
    port = free_port()
    log = folder / f"web-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(NOTIFIER_SECRET=SECRET, NOTIFIER_API_KEYS=API_KEY,
               NOTIFIER_ALLOWED_ORIGINS=ORIGIN, NOTIFIER_CONFIG=str(config))  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "notifier.cli", "serve", "--port", str(port),
             "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    wait_for_port(port, 30, proc)
    return Web(port, proc, log)


def init_cassandra(url: str, folder: Path) -> Path:
    """``notifier cassandra init``: the keyspace and schema (idempotent)."""
    log = folder / "cassandra-init.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    done = subprocess.run(
        [sys.executable, "-m", "notifier.cli", "cassandra", "init", "--url", url],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"notifier cassandra init failed:\n{done.stdout}{done.stderr}")
    return log


@contextmanager
def running(
    *,
    webs: int = 2,
    workers: int = 2,
    cassandra: str | None = None,
    redis_storage: str | None = None,
) -> Iterator[Cluster]:
    """A cluster for one run: Redis storage, or Cassandra storage (``host:port`` of a node, or
    ``host1,host2,host3:port`` of a cluster: ``tests/cassandra_node.url``) with the
    redis-server as broker and realtime bus; or storage and realtime bus on the Redis Cluster
    ``redis_storage`` (``redis+cluster://…``) with the redis-server as broker. Stops
    everything it started at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
    folder = Path(tempfile.mkdtemp(prefix="notifier-e2e-"))
    redis = RedisServer(binary)
    redis.start()
    prefix = f"e2e{uuid.uuid4().hex[:8]}"
    extra: list[Path] = []
    started: list[Web] = []
    pool: WorkerPool | None = None
    cluster: Cluster | None = None
    try:
        if redis_storage is not None:
            storage, broker = redis_storage, redis.url
        elif cassandra is None:
            storage, broker = redis.url, None
        else:
            storage = cassandra_url(cassandra)
            broker = redis.url
            extra.append(init_cassandra(storage, folder))
        config = folder / "notifier.toml"
        config.write_text(config_toml(storage, prefix, broker))
        pool = WorkerPool(config, threads=4)
        pool.start(workers)
        for _ in range(webs):
            started.append(start_web(config, folder))
        cluster = Cluster(redis, started, pool, folder, storage, config, extra)
        yield cluster
    finally:
        every = started + cluster.retired if cluster is not None else started
        for web in every:
            if web.proc.poll() is None:
                web.proc.terminate()
        for web in every:
            try:
                web.proc.wait(15)
            except subprocess.TimeoutExpired:
                web.proc.kill()
        if pool is not None:
            pool.stop()
        redis.stop()
        shutil.rmtree(redis.dir, ignore_errors=True)


def _errors(text: str) -> list[str]:
    """See ``Cluster.error_lines``."""
    lines = text.splitlines()
    found, head, chained = [], "", False
    for n, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            if not chained and not LEVELLED.match(head):
                found.append(f"traceback with no log level after {head[:150]!r}{_cause(lines, n)}")
            chained = False
        elif line.startswith(CHAINED):
            chained = True
        elif line.strip() and not line.startswith((" ", "\t")):
            head = line
            level = LEVELLED.match(line)
            if level is not None and level[2] in ("ERROR", "CRITICAL"):
                cause = (
                    _cause(lines, n + 1)
                    if lines[n + 1 : n + 2] and lines[n + 1].startswith("Traceback")
                    else ""
                )
                found.append(f"{line[:300]}{cause}")
    return found


def _cause(lines: list[str], at: int) -> str:
    """The exception line ending the traceback that starts at ``at``."""
    tail = next((t for t in lines[at + 1 :] if t.strip() and not t.startswith((" ", "\t"))), "")
    return f" -> {tail[:200]}" if tail else ""
