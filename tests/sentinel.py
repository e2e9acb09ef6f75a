"""A Sentinel-managed Redis of our own: a primary, a replica and three Sentinels on loopback.

Quorum 2, ``down-after-milliseconds`` 1000 and a short ``failover-timeout``, so that a failover
(``SENTINEL FAILOVER`` or a killed primary) completes in a few seconds. The two data nodes are
``tests.services.RedisServer`` processes (restartable: a killed primary comes back as a
replica of the new one); each Sentinel is ``redis-server <conf> --sentinel`` with a config file
of its own (Sentinels rewrite it).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.services import RedisServer, free_port, unavailable, wait_for_port

SERVICE = "mymaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


class SentinelProcess:
    """One Sentinel: ``redis-server sentinel.conf --sentinel`` on a free port."""

    def __init__(self, binary: str, primary_port: int) -> None:
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="notifier-sentinel-"))
        self.conf = self.dir / "sentinel.conf"
        self.conf.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.dir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, str(self.conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, 10, self.proc)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelSet:
    """Two data nodes (``nodes[0]`` starts as the primary) and three Sentinels."""

    def __init__(self, binary: str) -> None:
        primary = RedisServer(binary)
        replica = RedisServer(binary, options=["--replicaof", "127.0.0.1", str(primary.port)])
        self.nodes = [primary, replica]
        self.sentinels = [SentinelProcess(binary, primary.port) for _ in range(3)]

    def url(self, db: int = 0, *, scheme: str = "redis+sentinel") -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"{scheme}://{hosts}/{SERVICE}" + (f"/{db}" if db else "")

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        for sentinel in self.sentinels:
            sentinel.start()
        self.wait_settled()

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for node in self.nodes:
            node.stop()
            shutil.rmtree(node.dir, ignore_errors=True)

    # -- what the Sentinels say -------------------------------------------------------------
    def primary_port(self, *, every: bool = False) -> int | None:
        """The primary's port according to a majority of the Sentinels (``every``: all of
        them); None when they do not agree so far."""
        said: dict[int, int] = {}
        for sentinel in self.sentinels:
            try:
                with sentinel.client() as client:
                    address = client.sentinel_get_master_addr_by_name(SERVICE)
            except redis.RedisError:
                continue
            if address:
                port = int(address[1])
                said[port] = said.get(port, 0) + 1
        best = max(said.items(), key=lambda item: item[1], default=None)
        needed = len(self.sentinels) if every else len(self.sentinels) // 2 + 1
        return best[0] if best is not None and best[1] >= needed else None

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def primary(self) -> RedisServer:
        port = self.primary_port()
        assert port is not None, "the Sentinels agree on no primary"
        return self.node(port)

    def replica(self) -> RedisServer:
        primary = self.primary()
        return next(n for n in self.nodes if n is not primary)

    def wait_settled(self, timeout: float = 30) -> None:
        """Until every Sentinel knows the other two, all of them name the same primary, that
        node says it is the primary and has its replica online and caught up: what a
        failover needs, and a state where no failover is under way."""
        deadline = time.monotonic() + timeout
        problem = "not checked"
        while time.monotonic() < deadline:
            problem = self._unsettled()
            if not problem:
                return
            time.sleep(0.1)
        raise TimeoutError(f"Sentinel set not settled after {timeout}s: {problem}")

    def _unsettled(self) -> str:
        ports = set()
        for sentinel in self.sentinels:
            try:
                with sentinel.client() as client:
                    state = client.sentinel_master(SERVICE)
                    replicas = client.sentinel_slaves(SERVICE)
            except redis.RedisError as exc:
                return f"sentinel {sentinel.port}: {exc!r}"
            if state["num-other-sentinels"] < 2:
                return f"sentinel {sentinel.port} knows {state['num-other-sentinels']} others"
            if state["flags"] != "master":
                return f"sentinel {sentinel.port} flags the primary {state['flags']}"
            good = [
                r for r in replicas if r["flags"] == "slave" and r["master-link-status"] == "ok"
            ]
            if not good:
                return f"sentinel {sentinel.port} sees no healthy replica: {replicas}"
            ports.add(int(state["port"]))
        if len(ports) != 1:
            return f"the Sentinels name different primaries: {ports}"
        port = ports.pop()
        try:
            with redis.Redis(port=port, socket_timeout=2, decode_responses=True) as client:
                info = client.info("replication")
        except redis.RedisError as exc:
            return f"primary {port}: {exc!r}"
        if info["role"] != "master" or info.get("connected_slaves", 0) < 1:
            return f"node {port} is {info['role']} with {info.get('connected_slaves')} replicas"
        replica = info["slave0"]
        if replica["state"] != "online" or replica["offset"] != info["master_repl_offset"]:
            return f"replica of {port} not caught up: {replica}"
        return ""

    # -- faults ------------------------------------------------------------------------------
    def failover(self) -> None:
        """``SENTINEL FAILOVER``: the Sentinels promote the replica (they answer at once; the
        promotion follows)."""
        with self.sentinels[0].client() as client:
            client.sentinel_failover(SERVICE)

    def kill_primary(self) -> RedisServer:
        """SIGKILL the primary (no shutdown, nothing flushed): the node, to restart later."""
        node = self.primary()
        assert node.proc is not None
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(10)
        node.proc = None
        return node

    def wait_for_new_primary(
        self, old: int, timeout: float = 30, *, every: bool = False
    ) -> RedisServer:
        """Until a majority of the Sentinels (``every``: all of them) name a primary other
        than port ``old``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = self.primary_port(every=every)
            if port is not None and port != old:
                return self.node(port)
            time.sleep(0.05)
        raise TimeoutError(f"no new primary after {timeout}s")

    def restart_as_replica(self, node: RedisServer) -> None:
        """Start a killed node again as a replica of the current primary (what an operator's
        config does after a failover, which Sentinel has rewritten)."""
        primary = self.primary()
        node.options = ["--replicaof", "127.0.0.1", str(primary.port)]
        node.start()


@contextmanager
def sentinel_set() -> Iterator[SentinelSet]:
    """A started ``SentinelSet``, stopped at the end (skipped loudly, or failed in CI, when
    redis-server is missing)."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
        return
    servers = SentinelSet(binary)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()
