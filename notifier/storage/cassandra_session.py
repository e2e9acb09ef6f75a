"""Connecting to Cassandra: settings from a URL and the environment, one driver session with
explicit policies, prepared statements, and driver futures bridged to asyncio.

URL: ``cassandra://host1,host2:9042/keyspace?consistency=LOCAL_QUORUM&…`` (see
``CassandraSettings.from_url``). Secrets never travel in the URL: user name, password and TLS
files come from ``NOTIFIER_CASSANDRA_*`` environment variables.

Policies are spelled out rather than inherited from driver defaults: token-aware routing over
a DC-aware round robin (a statement goes straight to a replica of its partition), a client
timeout per request, and a retry policy that retries only statements marked idempotent, once,
on another host. The driver's default policy would also retry some non-idempotent writes; the
conditional batches of aggregated feeds are never retried by the driver, their own loop
re-reads and decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cassandra import ConsistencyLevel, OperationTimedOut, WriteTimeout, WriteType
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.connection import ConnectionException
from cassandra.policies import DCAwareRoundRobinPolicy, RetryPolicy, TokenAwarePolicy
from cassandra.protocol import ErrorMessage
from cassandra.query import (
    BatchStatement,
    BatchType,
    PreparedStatement,
    Statement,
    tuple_factory,
)

from notifier.errors import ConfigError
from notifier.storage.cassandra_concurrent import ConcurrentRun
from notifier.storage.cassandra_schema import KEYSPACE, Replication, check_version

Call = tuple[str, Sequence[Any]]
"""A prepared statement's name and its bind values."""
DEFAULT_PORT = 9042
_ENV = "NOTIFIER_CASSANDRA_"
_PARAMS = {
    "consistency",
    "serial_consistency",
    "local_dc",
    "replication_factor",
    "replication",
    "timeout",
    "connect_timeout",
    "max_in_flight",
    "cas_attempts",
    "protocol_version",
}


CAS_WRITE_UNKNOWN = 0x1700
"""Native protocol v5 error: a Paxos proposal was accepted by some replicas but not by a
quorum (a competing ballot cut it short), so a later Paxos round on the partition may still
complete it. Seen on more than one replica only, from conditional writes and from serial
reads (which complete a proposal in flight first); cassandra-driver 3.x raises it as a bare
``ErrorMessage``."""
COMMIT_ERRORS = (WriteTimeout, OperationTimedOut, ConnectionException, ErrorMessage)
"""What a conditional write may raise; ``outcome_unknown`` tells which leave it undecided."""


def outcome_unknown(exc: Exception) -> bool:
    """Whether a failed conditional write may have been applied (or may be applied later): it
    timed out, half a quorum accepted it, or the connection to its coordinator closed under
    it (a node that died; the driver retries no conditional write on another node). A serial
    read of the partition settles it: it completes such a proposal first, or it never will."""
    if isinstance(exc, ErrorMessage):
        return bool(exc.code == CAS_WRITE_UNKNOWN)
    return isinstance(exc, (WriteTimeout, OperationTimedOut, ConnectionException))


def _consistency(name: str, param: str) -> int:
    value = ConsistencyLevel.name_to_value.get(name.upper())
    if value is None:
        raise ConfigError(f"cassandra url: {param}={name!r} is not a consistency level")
    return int(value)


def _number(raw: str, param: str, low: float, high: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"cassandra url: {param} must be a number") from None
    if not low <= value <= high:
        raise ConfigError(f"cassandra url: {param} must be between {low:g} and {high:g}")
    return value


def _hosts(netloc: str) -> tuple[tuple[str, ...], int]:
    if "@" in netloc:
        raise ConfigError(
            "cassandra url: credentials do not go in the URL; set "
            "NOTIFIER_CASSANDRA_USERNAME and NOTIFIER_CASSANDRA_PASSWORD"
        )
    hosts, ports = [], set()
    for item in filter(None, netloc.split(",")):
        host, port = item, None
        if item.startswith("["):  # [ipv6]:port
            host, _, rest = item[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else None
        elif item.count(":") == 1:
            host, port = item.split(":")
        if port:
            if not port.isdigit():
                raise ConfigError(f"cassandra url: bad port in {item!r}")
            ports.add(int(port))
        hosts.append(host)
    if not hosts:
        raise ConfigError("cassandra url: name at least one contact point")
    if len(ports) > 1:
        raise ConfigError("cassandra url: all contact points must use the same port")
    return tuple(hosts), ports.pop() if ports else DEFAULT_PORT


def _replication(params: Mapping[str, str]) -> Replication:
    if "replication" in params:
        per_dc = []
        for item in params["replication"].split(","):
            dc, _, factor = item.partition(":")
            if not dc or not factor.isdigit() or int(factor) < 1:
                raise ConfigError("cassandra url: replication must look like dc1:3,dc2:3")
            per_dc.append((dc, int(factor)))
        return Replication(per_dc=tuple(per_dc))
    factor = params.get("replication_factor", "1")
    if not factor.isdigit() or int(factor) < 1:
        raise ConfigError("cassandra url: replication_factor must be a positive integer")
    return Replication(factor=int(factor))


def _tls(env: Mapping[str, str]) -> ssl.SSLContext | None:
    """A TLS context when NOTIFIER_CASSANDRA_TLS is true or any TLS file is given."""
    ca, cert, key = (env.get(f"{_ENV}TLS_{n}") for n in ("CA_FILE", "CERT_FILE", "KEY_FILE"))
    enabled = env.get(f"{_ENV}TLS", "").lower() in ("1", "true", "yes")
    if not (enabled or ca or cert):
        return None
    context = ssl.create_default_context(cafile=ca)
    if env.get(f"{_ENV}TLS_CHECK_HOSTNAME", "true").lower() in ("0", "false", "no"):
        context.check_hostname = False  # still verifies the chain, not the name
    if cert:
        context.load_cert_chain(cert, key)
    elif key:
        raise ConfigError(f"{_ENV}TLS_KEY_FILE needs {_ENV}TLS_CERT_FILE")
    return context


@dataclass(frozen=True)
class CassandraSettings:
    """Everything needed to reach a cluster; built once at start from URL and environment."""

    hosts: tuple[str, ...] = ("127.0.0.1",)
    port: int = DEFAULT_PORT
    keyspace: str = "notifier"
    consistency: int = ConsistencyLevel.LOCAL_QUORUM
    serial_consistency: int = ConsistencyLevel.SERIAL
    local_dc: str | None = None
    replication: Replication = field(default_factory=Replication)
    timeout: float = 10.0
    connect_timeout: float = 5.0
    max_in_flight: int = 128
    """Statements one call keeps in flight at once (many-row writes, fanout chunks)."""
    cas_attempts: int = 50
    """Optimistic attempts of one aggregated-feed write before it gives up as contended."""
    protocol_version: int = 5
    """Native protocol: 5 for Cassandra 4.0 and later (4 for 3.x); pinned so that the driver
    does not probe newer versions, with a warning each, at every connect."""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str, env: Mapping[str, str] | None = None) -> CassandraSettings:
        """Parse ``cassandra://host1,host2:port/keyspace?param=value…``.

        Parameters: ``consistency`` (default LOCAL_QUORUM), ``serial_consistency`` (SERIAL),
        ``local_dc``, ``replication_factor`` or ``replication=dc1:3,dc2:3`` (used by
        ``notifier cassandra init`` only), ``timeout`` and ``connect_timeout`` (seconds),
        ``max_in_flight``, ``cas_attempts``, ``protocol_version``. Raises ConfigError.
        """
        env = os.environ if env is None else env
        parts = urlsplit(url)
        if parts.scheme != "cassandra":
            raise ConfigError(f"not a cassandra:// url: {url!r}")
        hosts, port = _hosts(parts.netloc)
        keyspace = parts.path.strip("/") or "notifier"
        if not KEYSPACE.match(keyspace):
            raise ConfigError(
                f"cassandra url: keyspace {keyspace!r} must match [A-Za-z][A-Za-z0-9_]*"
            )
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = set(params) - _PARAMS
        if unknown:
            raise ConfigError(f"cassandra url: unknown parameter(s) {', '.join(sorted(unknown))}")
        username, password = env.get(f"{_ENV}USERNAME"), env.get(f"{_ENV}PASSWORD")
        if bool(username) != bool(password):
            raise ConfigError(f"set both {_ENV}USERNAME and {_ENV}PASSWORD, or neither")
        return cls(
            hosts=hosts,
            port=port,
            keyspace=keyspace,
            consistency=_consistency(params.get("consistency", "LOCAL_QUORUM"), "consistency"),
            serial_consistency=_consistency(
                params.get("serial_consistency", "SERIAL"), "serial_consistency"
            ),
            local_dc=params.get("local_dc") or None,
            replication=_replication(params),
            timeout=_number(params.get("timeout", "10"), "timeout", 0.1, 600),
            connect_timeout=_number(
                params.get("connect_timeout", "5"), "connect_timeout", 0.1, 600
            ),
            max_in_flight=int(
                _number(params.get("max_in_flight", "128"), "max_in_flight", 1, 10_000)
            ),
            cas_attempts=int(_number(params.get("cas_attempts", "50"), "cas_attempts", 1, 10_000)),
            protocol_version=int(
                _number(params.get("protocol_version", "5"), "protocol_version", 3, 5)
            ),
            username=username or None,
            password=password or None,
            tls=_tls(env),
        )


class IdempotentRetryPolicy(RetryPolicy):  # type: ignore[misc]
    """Retry a failed request once, on the next host, only when repeating it is harmless.

    Unavailable is always retried once (nothing was written). Timeouts and connection errors
    are retried only for statements marked idempotent; a Paxos (CAS) write never is.

    The parameters are named as in ``cassandra.policies.RetryPolicy``: the driver passes
    everything but the query as keywords (``retry_num=…, **error_info``).
    """

    def on_read_timeout(
        self,
        query: Any,
        consistency: Any,
        required_responses: int,
        received_responses: int,
        data_retrieved: bool,
        retry_num: int,
    ) -> tuple[Any, Any]:
        return (self.RETRY_NEXT_HOST, None) if retry_num == 0 else (self.RETHROW, None)

    def on_write_timeout(
        self,
        query: Any,
        consistency: Any,
        write_type: Any,
        required_responses: int,
        received_responses: int,
        retry_num: int,
    ) -> tuple[Any, Any]:
        if retry_num == 0 and write_type != WriteType.CAS and _idempotent(query):
            return self.RETRY_NEXT_HOST, None
        return self.RETHROW, None

    def on_unavailable(
        self,
        query: Any,
        consistency: Any,
        required_replicas: int,
        alive_replicas: int,
        retry_num: int,
    ) -> tuple[Any, Any]:
        return (self.RETRY_NEXT_HOST, None) if retry_num == 0 else (self.RETHROW, None)

    def on_request_error(
        self, query: Any, consistency: Any, error: Any, retry_num: int
    ) -> tuple[Any, Any]:
        if retry_num == 0 and _idempotent(query):
            return self.RETRY_NEXT_HOST, None
        return self.RETHROW, None


def _idempotent(query: Any) -> bool:
    return bool(getattr(query, "is_idempotent", False))


def _settle(out: asyncio.Future[list[Any]], rows: list[Any], error: BaseException | None) -> None:
    if out.done():  # the awaiting task was cancelled
        return
    if error is not None:
        out.set_exception(error)
    else:
        out.set_result(rows)


def _bridge(future: Any, loop: asyncio.AbstractEventLoop) -> asyncio.Future[list[Any]]:
    """An asyncio future for a driver ResponseFuture: all pages' rows, or its error.

    Driver callbacks run on the driver's I/O thread; they only hand results to the loop.
    """
    out: asyncio.Future[list[Any]] = loop.create_future()
    rows: list[Any] = []

    def deliver(error: BaseException | None) -> None:
        # RuntimeError: the loop was closed meanwhile, so nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, out, rows, error)

    def on_page(page: Any) -> None:
        rows.extend(page or ())  # writes answer None
        if future.has_more_pages:
            future.start_fetching_next_page()
        else:
            deliver(None)

    future.add_callbacks(on_page, deliver)
    return out


class CassandraConnection:
    """One cluster connection shared by any number of storages (one per namespace).

    It connects lazily, in a worker thread, on first use: the driver's connect, schema
    check and statement preparation block, and an event loop must not.
    """

    def __init__(self, settings: CassandraSettings, queries: Mapping[str, str]) -> None:
        self.settings = settings
        self._queries = dict(queries)
        self._lock = threading.Lock()
        self._cluster: Any = None
        self.session: Any = None
        self.prepared: dict[str, PreparedStatement] = {}

    def session_sync(self) -> Any:
        """The driver session, connected (blocking); no schema check, nothing prepared."""
        with self._lock:
            if self.session is None:
                self._cluster = self._make_cluster()
                self.session = self._cluster.connect()
            return self.session

    def connect_sync(self, *, check_schema: bool = True) -> None:
        """Connect, check the schema version and prepare every statement (idempotent)."""
        session = self.session_sync()
        with self._lock:
            if self.prepared:
                return
            if check_schema:
                check_version(session, self.settings.keyspace)
            prepared = {}
            for name, cql in self._queries.items():
                statement = session.prepare(cql.format(ks=self.settings.keyspace))
                # Reads, upserts and deletes are safe to repeat; conditional writes are not.
                statement.is_idempotent = " IF " not in cql
                prepared[name] = statement
            self.prepared = prepared

    def _make_cluster(self) -> Any:
        s = self.settings
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=s.local_dc)),
            retry_policy=IdempotentRetryPolicy(),
            consistency_level=s.consistency,
            serial_consistency_level=s.serial_consistency,
            request_timeout=s.timeout,
            row_factory=tuple_factory,
        )
        options: dict[str, Any] = {}
        if s.username is not None:
            options["auth_provider"] = PlainTextAuthProvider(s.username, s.password)
        return Cluster(
            contact_points=list(s.hosts),
            port=s.port,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=s.connect_timeout,
            control_connection_timeout=s.connect_timeout,
            ssl_context=s.tls,
            protocol_version=s.protocol_version,
            **options,
        )

    async def connect(self) -> None:
        if not self.prepared:
            await asyncio.to_thread(self.connect_sync)

    def bind(self, name: str, params: Sequence[Any], *, serial: bool = False) -> Statement:
        """The prepared statement ``name`` bound to ``params``; ``serial`` reads linearizably.
        Needs a connection: the ``run`` methods below connect first."""
        statement = self.prepared[name].bind(params)
        if serial:
            statement.consistency_level = self.settings.serial_consistency
        return statement

    async def execute(self, statement: Statement) -> list[Any]:
        """Run one statement without blocking the loop; all rows of all pages."""
        await self.connect()
        loop = asyncio.get_running_loop()
        return await _bridge(self.session.execute_async(statement), loop)

    async def run(self, name: str, *params: Any, serial: bool = False) -> list[Any]:
        """Run the prepared statement ``name`` with ``params``."""
        await self.connect()
        return await self.execute(self.bind(name, params, serial=serial))

    async def run_all(self, calls: Iterable[Call], *, serial: bool = False) -> list[list[Any]]:
        """Run many prepared statements concurrently, at most ``max_in_flight`` at a time
        (one round trip each, in parallel, each routed to a replica of its partition)."""
        await self.connect()
        return await self.execute_all([self.bind(n, p, serial=serial) for n, p in calls])

    async def execute_all(self, statements: Sequence[Statement]) -> list[list[Any]]:
        """Run statements concurrently, at most ``max_in_flight`` at a time, kept in flight by
        the driver's own thread (``cassandra_concurrent``); each one's rows, in order, or the
        first error."""
        await self.connect()
        run = ConcurrentRun(
            self.session, statements, self.settings.max_in_flight, asyncio.get_running_loop()
        )
        try:
            return await run.start()
        except asyncio.CancelledError:
            run.stop()
            raise

    def batch(
        self, calls: Iterable[Call], *, logged: bool = False, idempotent: bool = True
    ) -> Statement:
        """Prepared statements as one batch: unlogged for one partition (atomic and isolated
        there), logged when it spans partitions (all of it lands eventually)."""
        batch = BatchStatement(batch_type=BatchType.LOGGED if logged else BatchType.UNLOGGED)
        batch.is_idempotent = idempotent
        for name, params in calls:
            batch.add(self.prepared[name], params)
        return batch

    async def run_batch(
        self, calls: Iterable[Call], *, logged: bool = False, idempotent: bool = True
    ) -> list[Any]:
        """Run prepared statements as one batch (see ``batch``)."""
        await self.connect()
        return await self.execute(self.batch(calls, logged=logged, idempotent=idempotent))

    def close_sync(self) -> None:
        with self._lock:
            if self._cluster is not None:
                self._cluster.shutdown()
            self._cluster = self.session = None
            self.prepared = {}

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sync)
