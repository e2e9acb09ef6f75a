"""Real services for the tests: started once per session, or taken from the environment.

``NOTIFIER_TEST_REDIS_URL`` / ``NOTIFIER_TEST_CASSANDRA`` point at running servers; otherwise a
redis-server is started on a free port (the Debian package), and Cassandra is started with
``scripts/cassandra-node`` when ``CI=true`` or ``NOTIFIER_TEST_CASSANDRA=start``. Outside CI a
missing service skips its tests with a loud reason; in CI it fails them.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REDIS_TOPOLOGY = os.environ.get("NOTIFIER_TEST_REDIS_TOPOLOGY", "single")
"""``single`` (one redis-server) or ``cluster`` (the ``redis`` backend on a Redis Cluster)."""
CLUSTER_BROKER_URL: str | None = None
"""In the cluster topology: the one-server Redis the fanout broker uses."""


def broker_for(storage_url: str) -> str | None:
    """The broker URL a test configuration needs beside ``storage_url``: None where the
    storage's own Redis serves (one server), the session's one server for a cluster."""
    return CLUSTER_BROKER_URL if storage_url.startswith("redis+cluster://") else None


def unavailable(reason: str) -> NoReturn:
    """Skip loudly outside CI; fail in CI, where every service-backed test must run."""
    if IN_CI:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(f"SERVICE MISSING: {reason}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bound_socket() -> socket.socket:
    """A socket bound to a free port of 127.0.0.1 and kept open, for a server to listen on
    (uvicorn's ``serve(sockets=…)``). ``free_port()`` then a later bind is a race: between the
    two, another server of the test or an outgoing connection can take the port (seen in CI:
    "address already in use"); a port that must be known before its server starts (an
    allowed origin) is reserved this way instead."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


class RedisServer:
    """A redis-server process of our own (restartable, for fault tests)."""

    def __init__(
        self,
        binary: str,
        port: int | None = None,
        *,
        persistent: bool = False,
        options: Sequence[str] = (),
    ) -> None:
        self.binary = binary
        self.persistent = persistent
        self.options = list(options)
        """More redis-server arguments (``--maxmemory-policy``, ``allkeys-lru``…)."""
        """Append-only file fsynced on every write: a restart keeps everything acknowledged."""
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="notifier-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.persistent else "no",
                "--appendfsync",
                "always",
                "--dir",
                self.dir,
                "--maxclients",
                "20000",
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, 10, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@contextmanager
def restartable_redis() -> Iterator[RedisServer]:
    """A started redis-server of the test's own, which it may stop and start again: its
    append-only file is fsynced on every write, so a restart keeps everything acknowledged.
    Stopped and removed at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(binary, persistent=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


@contextmanager
def redis_url() -> Iterator[str]:
    """A Redis URL for the session: given, or a server of our own."""
    given = os.environ.get("NOTIFIER_TEST_REDIS_URL")
    if given:
        yield given
        return
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
        return
    server = RedisServer(binary)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


@contextmanager
def running_demo(lines: int = 1) -> Iterator[tuple[str, list[str]]]:
    """``notifier demo`` on a free port, with no NOTIFIER_* variables: the page's URL and the
    first ``lines`` lines it printed (printed once the server listens)."""
    notifier = Path(sys.executable).with_name("notifier")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    proc = subprocess.Popen(
        [str(notifier), "demo", "--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        printed = [proc.stdout.readline() for _ in range(lines)]
        match = re.search(r"open (http://\S+)", printed[0])
        assert match, f"notifier demo printed {printed!r}"
        yield match.group(1), printed
    finally:
        proc.terminate()
        proc.wait(15)


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port >= 55_000:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port


class RedisClusterServers:
    """A Redis Cluster of our own: ``primaries`` redis-server processes on loopback, every
    slot assigned by ``redis-cli --cluster create``, no replicas (a test that fails a node
    over adds its own)."""

    def __init__(self, binary: str, primaries: int = 3) -> None:
        self.servers = [
            RedisServer(
                binary,
                free_cluster_port(),
                options=["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"],
            )
            for _ in range(primaries)
        ]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers)

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{s.port}" for s in self.servers]

    def start(self) -> None:
        for server in self.servers:
            server.start()
        cli = shutil.which("redis-cli") or "redis-cli"
        subprocess.run(
            [cli, "--cluster", "create", *self.addresses, "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        for server in self.servers:
            while True:
                info = subprocess.run(
                    [cli, "-p", str(server.port), "cluster", "info"],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout
                if "cluster_state:ok" in info:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"cluster not ok on {server.port}: {info}")
                time.sleep(0.1)

    def node_id(self, index: int) -> str:
        return subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "-p", str(self.servers[index].port),
             "cluster", "myid"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

    def reshard(self, source: int, target: int, slots: int) -> None:
        """Move ``slots`` slots (with their keys) from one primary to another, as an
        operator does with redis-cli."""
        subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "--cluster", "reshard",
             self.addresses[0],
             "--cluster-from", self.node_id(source), "--cluster-to", self.node_id(target),
             "--cluster-slots", str(slots), "--cluster-yes", "--cluster-pipeline", "20"],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
            shutil.rmtree(server.dir, ignore_errors=True)


@contextmanager
def redis_cluster() -> Iterator[RedisClusterServers | str]:
    """A Redis Cluster for the session: ``NOTIFIER_TEST_REDIS_CLUSTER`` (a redis+cluster://
    URL) if given, else three primaries of our own."""
    given = os.environ.get("NOTIFIER_TEST_REDIS_CLUSTER")
    if given and given != "start":
        yield given
        return
    binary = shutil.which("redis-server")
    if binary is None or shutil.which("redis-cli") is None:
        unavailable("redis-server / redis-cli are not installed (apt-get install redis-server)")
        return
    cluster = RedisClusterServers(binary)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
