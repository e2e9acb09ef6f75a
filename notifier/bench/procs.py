"""What every scenario needs: free ports, server processes, their CPU and memory, a notifier
stack (redis-server, ``notifier serve``, ``notifier worker``) started and stopped as a unit."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SECRET = "bench-secret-" + "x" * 32
"""The benchmark's own servers only: generated data, never a deployment's secret."""
API_KEY = "bench-api-key-0123456789"


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    """Resident memory of a process, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (nan when empty)."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(pct / 100 * (len(sorted_values) - 1)))
    return sorted_values[index]


def ratio(a: float, b: float) -> str:
    """``a / b`` as ``1.23x``."""
    return f"{a / b:.2f}x" if b else "n/a (baseline below the clock's resolution)"


def spawn(
    args: list[str], *, env: Mapping[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a server process, its output in ``log`` (or discarded)."""
    with log.open("wb") if log else open(os.devnull, "wb") as out:
        return subprocess.Popen(
            args, env=dict(env) if env is not None else None, stdout=out, stderr=subprocess.STDOUT
        )


@contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """A list to put processes in; all are terminated (then killed) on the way out."""
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
                proc.wait(5)


async def wait_port(port: int, proc: subprocess.Popen[bytes], within: float = 30) -> None:
    """Return once ``port`` accepts connections; raise if ``proc`` exits first."""
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
    raise TimeoutError(f"nothing listens on port {port} after {within}s")


@dataclass
class Stack:
    """A running notifier on Redis: where to reach it and the processes behind it."""

    redis_url: str
    http_url: str
    ws_url: str
    web: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]
    redis: subprocess.Popen[bytes] | None
    folder: Path
    config_path: Path
    headers: dict[str, str] = field(default_factory=dict)


@contextmanager
def _folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="notifier-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def redis_command(port: int, folder: Path) -> list[str]:
    """A throwaway redis-server: loopback, no persistence, many clients."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
            "no", "--dir", str(folder), "--maxclients", "20000"]  # fmt: skip


class StackRunner:
    """Starts a notifier stack inside ``async with``: redis-server (unless a URL is given),
    one ``notifier serve`` and ``workers`` ``notifier worker`` processes on one TOML file."""

    def __init__(
        self,
        *,
        workers: int = 1,
        redis_url: str | None = None,
        toml: str = "",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.workers = workers
        self.given_redis = redis_url
        self.toml = toml
        self.env = dict(env or {})
        self._cleanup = ExitStack()

    async def __aenter__(self) -> Stack:
        folder = self._cleanup.enter_context(_folder())
        procs = self._cleanup.enter_context(processes())
        try:
            return await self._start(folder, procs)
        except BaseException:
            self._cleanup.close()
            raise

    async def _start(self, folder: Path, procs: list[subprocess.Popen[bytes]]) -> Stack:
        redis_proc = None
        url = self.given_redis
        if url is None:
            port = free_port()
            redis_proc = spawn(redis_command(port, folder))
            procs.append(redis_proc)
            await wait_port(port, redis_proc)
            url = f"redis://127.0.0.1:{port}/0"
        config = folder / "notifier.toml"
        config.write_text(f'[storage]\nurl = "{url}"\nprefix = "bench"\n{self.toml}\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
        env.update(NOTIFIER_CONFIG=str(config), NOTIFIER_SECRET=SECRET, NOTIFIER_API_KEYS=API_KEY)
        env.update(self.env)
        cli = [sys.executable, "-m", "notifier.cli"]
        web_port = free_port()
        web = spawn([*cli, "serve", "--port", str(web_port), "--log-level", "warning"],
                    env=env, log=folder / "web.log")  # fmt: skip
        procs.append(web)
        workers = [
            spawn([*cli, "worker", "--processes", "1"], env=env, log=folder / f"worker{n}.log")
            for n in range(self.workers)
        ]
        procs.extend(workers)
        await wait_port(web_port, web)
        return Stack(
            redis_url=url,
            http_url=f"http://127.0.0.1:{web_port}",
            ws_url=f"ws://127.0.0.1:{web_port}/v1/realtime",
            web=web,
            workers=workers,
            redis=redis_proc,
            folder=folder,
            config_path=config,
            headers={"Authorization": f"Bearer {API_KEY}"},
        )

    async def __aexit__(self, *exc: object) -> None:
        self._cleanup.close()
