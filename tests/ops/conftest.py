"""What an operator runs: a private redis-server, ``notifier serve`` processes and a
``notifier worker``, with JSON logs, worker metrics and an admin password; and the browser
of tests/widget for the operator page."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fanout.conftest import ROOT
from tests.services import RedisServer, free_port, unavailable, wait_for_port
from tests.web.conftest import API_KEY, ORIGIN, SECRET
from tests.widget.conftest import browser  # noqa: F401  (the session's chromium)

ADMIN_PASSWORD = "operator-password-0123456789"
NAMESPACE = "opstest"


@dataclass
class Stack:
    web: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    port: int
    worker_metrics: int
    folder: Path
    redis: RedisServer
    config: Path
    ports: list[int] = field(default_factory=list)
    """Every web process's port (``port`` is the first)."""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.folder.glob("*.log")))

    def log_lines(self, name: str) -> list[dict[str, object]]:
        """A process's JSON log lines (a line that is not JSON fails the test)."""
        return [json.loads(line) for line in (self.folder / name).read_text().splitlines()]


def _env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(NOTIFIER_SECRET=SECRET, NOTIFIER_API_KEYS=API_KEY, NOTIFIER_ALLOWED_ORIGINS=ORIGIN,
               NOTIFIER_CONFIG=str(config), NOTIFIER_LOG_FORMAT="json",
               NOTIFIER_ADMIN_PASSWORD=ADMIN_PASSWORD)  # fmt: skip
    return env


def running(webs: int) -> Iterator[Stack]:
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
        return
    folder = Path(tempfile.mkdtemp(prefix="notifier-ops-"))
    redis = RedisServer(binary)
    redis.start()
    worker_metrics = free_port()
    config = folder / "notifier.toml"
    config.write_text(f"""[storage]
url = "{redis.url}"

[fanout]
namespace = "{NAMESPACE}"
chunk_size = 10
poll_ms = 50
max_retries = 1
min_backoff_ms = 50
max_backoff_ms = 100
metrics_listen = "127.0.0.1:{worker_metrics}"
""")
    env = _env(config)
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    try:
        with (folder / "worker.log").open("wb") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "notifier.cli", "worker", "--processes", "1",
                 "--threads", "2", "--log-level", "debug"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            ))  # fmt: skip
        for n in range(webs):
            port = free_port()
            name = "web.log" if n == 0 else f"web-{n}.log"
            with (folder / name).open("wb") as out:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "notifier.cli", "serve", "--port", str(port)],
                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                ))  # fmt: skip
            ports.append(port)
        for port, proc in zip(ports, procs[1:], strict=True):
            wait_for_port(port, 30, proc)
        wait_for_port(worker_metrics, 30, procs[0])
        yield Stack(procs[1], procs[0], ports[0], worker_metrics, folder, redis, config, ports)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        redis.stop()
        shutil.rmtree(redis.dir, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def stack() -> Iterator[Stack]:
    yield from running(webs=1)


@pytest.fixture
def stack2() -> Iterator[Stack]:
    yield from running(webs=2)
