"""A Sentinel failover under load, for real: two ``notifier serve`` and two ``notifier worker``
processes whose storage, broker and realtime bus are all ``redis+sentinel://…/mymaster`` (a
primary, a replica and three Sentinels on loopback: tests/sentinel.py), websocket clients
connected, activities posted continuously over HTTP; mid-flow the replica is promoted, by
``SENTINEL FAILOVER`` or by killing the primary (SIGKILL).

With ``NOTIFIER_REDIS_MIN_REPLICAS=1`` every write the servers acknowledge is on the replica
first, so: every activity whose POST was acknowledged is in every follower's feed afterwards,
exactly once; a POST refused meanwhile got a 503 with a JSON body (never a 500), and its
producer's retry of the same activity is idempotent; every client, once it has resumed, holds
what an HTTP read returns."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from notifier.storage.redis_replicas import MIN_REPLICAS
from tests.e2e.cluster import Web
from tests.fanout.conftest import FEEDS, ROOT
from tests.realtime.client import http_window
from tests.realtime.test_processes import KEY, Resilient, bearer, converged, token
from tests.sentinel import SentinelSet, sentinel_set
from tests.services import free_port, wait_for_port
from tests.web.conftest import API_KEY, ORIGIN, SECRET

pytestmark = [pytest.mark.timeout(300), pytest.mark.single_redis]

FOLLOWERS = [f"f{i}" for i in range(8)]
CONNECTED = FOLLOWERS[:6]
"""Followers with a websocket client (alternating between the two web processes)."""
FEEDS_WATCHED = ["timeline", "digest"]  # flat and aggregated (with counts), both fanned out
BEFORE_FAULT = 40
"""Activities acknowledged before the fault."""
AFTER_FAULT = 30
"""Activities acknowledged once the fault is over, before the producers stop: writes
resumed, on the new primary."""
START = datetime(2026, 11, 29, 10, tzinfo=UTC)


def config_toml(prefix: str) -> str:
    """Feeds and fanout settings; the URLs come from the environment, as deployed."""
    return f"""[storage]
prefix = "{prefix}"

[server]
key_rate = 100000.0
key_burst = 100000
user_rate = 100000.0
user_burst = 100000
{FEEDS}
[fanout]
namespace = "ns{prefix}"
chunk_size = 3
threads = 4
poll_ms = 50
min_backoff_ms = 50
max_backoff_ms = 1000
heartbeat_timeout_ms = 5000
sweep_interval_ms = 500
"""


@dataclass
class Deployment:
    """The processes of one case, their logs, and the environment they share."""

    servers: SentinelSet
    folder: Path
    env: dict[str, str]
    webs: list[Web] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def logs(self) -> list[Path]:
        return sorted(self.folder.glob("*.log"))

    def output(self, chars: int = 3000) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-chars:]}" for log in self.logs()
        )

    def start_web(self) -> Web:
        port = free_port()
        log = self.folder / f"web-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "notifier.cli", "serve", "--port", str(port),
                 "--log-level", "warning"],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for_port(port, 30, proc)
        web = Web(port, proc, log)
        self.webs.append(web)
        return web

    def start_worker(self) -> None:
        log = self.folder / f"worker-{len(self.workers)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "notifier.fanout.cli", "worker", "--processes", "1",
                 "--threads", "4"],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.workers.append(proc)

    def stop(self) -> None:
        procs = [w.proc for w in self.webs] + self.workers
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@contextmanager
def deployed(servers: SentinelSet, min_replicas: int, folder: Path) -> Iterator[Deployment]:
    prefix = f"sf{uuid.uuid4().hex[:8]}"
    config = folder / "notifier.toml"
    config.write_text(config_toml(prefix))
    url = servers.url()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(
        NOTIFIER_CONFIG=str(config),
        NOTIFIER_STORAGE_URL=url,
        NOTIFIER_BROKER_URL=url,
        NOTIFIER_REALTIME_URL=url,
        NOTIFIER_SECRET=SECRET,
        NOTIFIER_API_KEYS=API_KEY,
        NOTIFIER_ALLOWED_ORIGINS=ORIGIN,
        **{MIN_REPLICAS: str(min_replicas)},
    )
    deployment = Deployment(servers, folder, env)
    try:
        deployment.start_worker()
        deployment.start_worker()
        deployment.start_web()
        deployment.start_web()
        yield deployment
    finally:
        deployment.stop()


@dataclass
class Tally:
    """What the producers saw."""

    attempts: int = 0
    acked: dict[str, str] = field(default_factory=dict)
    """foreign id → activity id, for every POST answered 2xx."""
    refused: Counter[str] = field(default_factory=Counter)
    """Refusals by ``status error-code``."""
    unclean: list[str] = field(default_factory=list)
    """Answers that are neither 2xx nor a 503 with a JSON error body."""
    transport_errors: int = 0
    fault_over: bool = False
    """Set once the fault is over (a new primary named; a killed node restarted)."""
    acked_since: int = 0
    """Activities acknowledged since the fault was over."""
    flowing: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once ``BEFORE_FAULT`` activities are acknowledged."""
    resumed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once ``AFTER_FAULT`` activities are acknowledged since the fault was over."""


def activity(n: int) -> dict[str, Any]:
    """The n-th activity: same foreign id and time on every retry (idempotent)."""
    return {
        "actor": "ana", "verb": "like", "object": f"photo:{n}", "foreign_id": f"like:{n}",
        "time": (START + timedelta(seconds=n)).isoformat().replace("+00:00", "Z"),
    }  # fmt: skip


async def produce(
    http: httpx.AsyncClient, tally: Tally, numbers: range, stop: asyncio.Event
) -> None:
    """Post activities one after another, each until acknowledged, as an app would."""
    for n in numbers:
        if stop.is_set():
            return
        body = activity(n)
        while True:
            tally.attempts += 1
            try:
                response = await http.post("/v1/activities", json=body, headers=KEY)
            except httpx.TransportError:
                tally.transport_errors += 1
                await asyncio.sleep(0.05)
                continue
            if response.status_code in (200, 201):
                tally.acked[body["foreign_id"]] = response.json()["id"]
                tally.acked_since += tally.fault_over
                if len(tally.acked) >= BEFORE_FAULT:
                    tally.flowing.set()
                if tally.acked_since >= AFTER_FAULT:
                    tally.resumed.set()
                break
            code = _error_code(response)
            if response.status_code == 503 and code is not None:
                tally.refused[f"503 {code}"] += 1
            else:
                tally.unclean.append(f"{response.status_code} {response.text[:200]}")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.01)


def _error_code(response: httpx.Response) -> str | None:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


async def timeline_ids(http: httpx.AsyncClient, user: str, tokens: dict[str, str]) -> list[str]:
    items, _ = await http_window(http, "timeline", bearer(tokens[user]), None)
    return [i["id"] for i in items]


async def digest_count(http: httpx.AsyncClient, user: str, tokens: dict[str, str]) -> int:
    """Activities counted by the groups of ``user``'s aggregated feed."""
    items, _ = await http_window(http, "digest", bearer(tokens[user]), None)
    return sum(int(group["activity_count"]) for group in items)


async def run_case(
    servers: SentinelSet,
    tmp_path: Path,
    fault: Callable[[SentinelSet], Awaitable[None]],
    min_replicas: int = 1,
) -> Tally:
    """Deploy, connect the clients, post through ``fault``, then check everything."""
    started = time.monotonic()
    with deployed(servers, min_replicas, folder=tmp_path) as deployment:
        one, two = deployment.webs
        async with httpx.AsyncClient(base_url=one.http, timeout=30) as http:
            for user in FOLLOWERS:
                response = await http.post(
                    "/v1/follows", json={"user": user, "target": "ana"}, headers=KEY
                )
                assert response.status_code in (200, 201), response.text
            tokens = {user: await token(http, user) for user in FOLLOWERS}
            clients = [
                Resilient((two if i % 2 else one).ws, user, tokens[user], FEEDS_WATCHED)
                for i, user in enumerate(CONNECTED)
            ]
            tasks = [asyncio.create_task(c.run()) for c in clients]
            tally = Tally()
            stop = asyncio.Event()
            try:
                for _ in range(400):
                    if all(c.connections for c in clients):
                        break
                    await asyncio.sleep(0.05)
                assert all(c.connections for c in clients), deployment.output()
                # Two producers, one per web process.
                async with httpx.AsyncClient(base_url=two.http, timeout=30) as other:
                    producers = [
                        asyncio.create_task(produce(http, tally, range(0, 10_000, 2), stop)),
                        asyncio.create_task(produce(other, tally, range(1, 10_000, 2), stop)),
                    ]
                    await asyncio.wait_for(tally.flowing.wait(), 60)
                    await fault(servers)
                    tally.fault_over = True
                    try:
                        await asyncio.wait_for(tally.resumed.wait(), 120)
                    except TimeoutError:
                        raise AssertionError(f"writes never resumed: {tally}") from None
                    stop.set()
                    await asyncio.gather(*producers)
                fanout_done = await _all_fanned_out(http, tally, tokens)
                wrong = await converged(http, clients, within=60)
                timelines = {u: await timeline_ids(http, u, tokens) for u in FOLLOWERS}
                counted = {u: await digest_count(http, u, tokens) for u in FOLLOWERS}
            finally:
                for c in clients:
                    c.stopping = True
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        output = deployment.output()
        logs = "".join(log.read_text(errors="replace") for log in deployment.logs())
    acked = set(tally.acked.values())
    lost = {u: len(acked - set(ids)) for u, ids in timelines.items()}
    doubled = {u: len(ids) - len(set(ids)) for u, ids in timelines.items()}
    extra = {u: len(set(ids) - acked) for u, ids in timelines.items()}
    print(
        f"\n{fault.__name__}, min_replicas={min_replicas}: {len(tally.acked)} activities "
        f"acknowledged in {tally.attempts} POSTs; refused {dict(tally.refused)}; transport errors "
        f"{tally.transport_errors}; lost per follower {lost}; doubled {doubled}; "
        f"{time.monotonic() - started:.1f} s"
    )
    assert not tally.unclean, f"{tally.unclean[:5]}\n{output}"
    assert tally.refused, "the fault refused no POST: it happened outside the flow"
    assert fanout_done, f"lost {lost}, aggregated counts {counted}\n{output}"
    assert lost == dict.fromkeys(FOLLOWERS, 0) and doubled == dict.fromkeys(FOLLOWERS, 0)
    assert extra == dict.fromkeys(FOLLOWERS, 0)  # every posted activity was acknowledged
    # The aggregated feed counts each activity once: none lost, none merged in twice.
    assert counted == dict.fromkeys(FOLLOWERS, len(acked)), counted
    assert not wrong, f"{wrong}\n{output}"
    assert "unhandled error" not in logs and "dead-lettered" not in logs, output
    return tally


async def _all_fanned_out(
    http: httpx.AsyncClient, tally: Tally, tokens: dict[str, str], within: float = 90
) -> bool:
    """Until every acknowledged activity is in every follower's timeline and counted in their
    aggregated feed (False if not by then): the fanout jobs are done."""
    acked = set(tally.acked.values())
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with suppress(AssertionError):  # a 503 read while the primary changes
            timelines = [acked <= set(await timeline_ids(http, u, tokens)) for u in FOLLOWERS]
            counts = [await digest_count(http, u, tokens) == len(acked) for u in FOLLOWERS]
            if all(timelines) and all(counts):
                return True
        await asyncio.sleep(0.25)
    return False


async def sentinel_failover(servers: SentinelSet) -> None:
    """``SENTINEL FAILOVER``: the replica is promoted; the old primary, still up, is made
    its replica by the Sentinels seconds later."""
    old = servers.primary().port
    await asyncio.to_thread(servers.failover)
    await asyncio.to_thread(servers.wait_for_new_primary, old)


async def primary_killed(servers: SentinelSet) -> None:
    """SIGKILL the primary; once the Sentinels promote the replica, the killed node comes
    back as its replica (as an operator or a supervisor restarts it)."""
    killed = await asyncio.to_thread(servers.kill_primary)
    await asyncio.to_thread(servers.wait_for_new_primary, killed.port)
    await asyncio.to_thread(servers.restart_as_replica, killed)


async def test_a_sentinel_failover_loses_no_acknowledged_activity(tmp_path: Path) -> None:
    with sentinel_set() as servers:
        await run_case(servers, tmp_path, sentinel_failover)


async def test_a_killed_primary_loses_no_acknowledged_activity(tmp_path: Path) -> None:
    with sentinel_set() as servers:
        await run_case(servers, tmp_path, primary_killed)
