"""Webhook benchmark: deliveries per second through notifier's delivery path, next to a plain
HTTP client posting the same bodies to the same receiver in the same run.

- **receiver** (notifier/bench/webhook_receiver.py): a bare ASGI app under uvicorn in a
  process of its own (it does not share the senders' CPU time), verifying every signature,
  answering 200 and counting distinct ``webhook-id`` values.
- **notifier**: redis-server (storage and broker), ``--workers`` ``notifier worker``
  processes with ``--threads`` each, one endpoint registered in the delivery store. Each
  round claims N webhook deliveries (untimed: deciding is the escalation's work, not the
  sender's), each with a ~1 KB JSON body made by ``event_body`` from a hydrated-looking
  group; then the clock starts, N ``Attempt`` timers are scheduled at once through the
  dispatcher (as ``Escalation`` does after a claim), and it stops when the receiver has
  answered the N-th distinct id. Each attempt is the real one: read the delivery, take its
  lease, read the endpoints, POST signed, record the outcome. The store is then checked to
  show all N delivered.
- **raw**: one ``httpx.AsyncClient`` in this process, configured as ``WebhookSender``'s,
  posting the same N (id, body) pairs signed the same way, with ``workers * threads``
  requests in flight (the attempts notifier's workers run at once), timed the same way.

Both get one unmeasured warm-up round (connections, scripts, first-use costs), then
``rounds`` measured ones, notifier then raw in each; figures are medians over rounds. CPU
per delivery: the worker processes' (notifier), this process's (raw), and Redis's and the
receiver's for both. Run: ``notifier bench webhooks``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from notifier import ids
from notifier.bench.procs import (
    SECRET,
    cpu_seconds,
    free_port,
    processes,
    ratio,
    redis_command,
    spawn,
    wait_port,
)
from notifier.bench.webhook_receiver import SECRET_ENV
from notifier.config import Config
from notifier.delivery.model import Delivery, Endpoint, make_id
from notifier.delivery.settings import Rule
from notifier.delivery.signing import headers, new_secret
from notifier.delivery.store import DeliveryStore
from notifier.delivery.webhooks import event_body
from notifier.fanout.jobs import Dispatcher
from notifier.fanout.runtime import open_manager
from notifier.fanout.timers import Attempt, Timer
from notifier.feeds import Group
from notifier.model import Activity

ENDPOINT = "ep_bench"
FEED = "notification"
_MINUTE = timedelta(minutes=1)
_TOML = """[storage]
url = "{url}"
prefix = "bench"

[delivery.webhook]
allow_private = true
"""


@dataclass
class Round:
    """One measured round of one sender."""

    seconds: float
    """From just before the first send (or schedule) to the receiver's N-th distinct answer."""
    delivered: int
    """Distinct ids the receiver acknowledged."""
    answered: int
    """2xx answers (more than ``delivered``: some id was sent twice)."""
    sender_cpu_s: float
    redis_cpu_s: float
    receiver_cpu_s: float
    schedule_s: float = 0.0
    """notifier: how long scheduling the N attempt timers took (inside ``seconds``)."""


@dataclass
class Side:
    """One sender's rounds; figures are medians over them."""

    name: str
    concurrency: int
    rounds: list[Round] = field(default_factory=list)

    @property
    def deliveries_per_s(self) -> float:
        return statistics.median(r.delivered / r.seconds for r in self.rounds)

    def cpu_us(self, of: Callable[[Round], float]) -> float:
        """Median CPU per delivered id, µs, of the process(es) ``of`` picks."""
        return statistics.median(of(r) / max(r.delivered, 1) * 1e6 for r in self.rounds)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "deliveries_per_s": self.deliveries_per_s,
            "sender_cpu_us": self.cpu_us(lambda r: r.sender_cpu_s),
            "redis_cpu_us": self.cpu_us(lambda r: r.redis_cpu_s),
            "receiver_cpu_us": self.cpu_us(lambda r: r.receiver_cpu_s),
            "rounds": [asdict(r) for r in self.rounds],
        }


@dataclass
class WebhookBench:
    """Both senders, measured in one run on the same receiver."""

    deliveries: int
    workers: int
    threads: int
    body_bytes: int
    notifier: Side
    raw: Side

    @property
    def ratio(self) -> float:
        """notifier deliveries/s over raw's."""
        return self.notifier.deliveries_per_s / self.raw.deliveries_per_s

    def summary(self) -> dict[str, Any]:
        return {
            "deliveries": self.deliveries,
            "workers": self.workers,
            "threads": self.threads,
            "body_bytes": self.body_bytes,
            "ratio": self.ratio,
            "results": [self.notifier.summary(), self.raw.summary()],
        }


def batch(n: int, round_: int, now: datetime) -> list[Delivery]:
    """``n`` webhook deliveries to the bench endpoint, one per user, ids and bodies as
    ``Escalation`` makes them: a group of three likes, hydrated, about 1 KB of JSON."""
    rule = Rule(after_s=600, until="seen")
    found = []
    for i in range(n):
        user = f"u{round_ + 1:02d}{i:06d}"
        likes = [
            Activity(
                id=ids.make_id(at), actor=actor, verb="like", object=f"photo:{i}", time=at,
                to=(f"{FEED}:{user}",), category="social",
            )
            for actor, at in (("cy", now), ("bo", now - _MINUTE), ("ana", now - 2 * _MINUTE))
        ]  # fmt: skip
        group = Group(
            id=likes[-1].id, key=f"social:like:photo:{i}", verb="like", activities=likes,
            activity_count=3, actor_count=3, actors=["cy", "bo", "ana"],
            created_at=likes[-1].time, updated_at=now, position=likes[0].id, is_seen=False,
            is_read=False, is_archived=False, category="social",
        )  # fmt: skip
        position = group.position
        delivery_id = make_id(position, "webhook", ENDPOINT, FEED, user, group.id)
        body = event_body(
            delivery_id=delivery_id, created_at=now, user=user, feed=FEED, group=group,
            summary="cy and 2 others liked your photo", rule=rule,
        )  # fmt: skip
        delivery = Delivery(
            id=delivery_id, channel="webhook", target=ENDPOINT, scope=delivery_id, user=user,
            payload=body, created_at=now,
        )  # fmt: skip
        found.append(delivery)
    return found


class Receiver:
    """The receiver process, through its control routes."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str) -> None:
        self.proc = proc
        self.url = url
        self.http = httpx.AsyncClient(base_url=url, timeout=30)

    async def reset(self) -> None:
        (await self.http.post("/_reset")).raise_for_status()

    async def counts(self) -> dict[str, Any]:
        response = await self.http.get("/_counts")
        response.raise_for_status()
        counts: dict[str, Any] = response.json()
        return counts

    async def wait_for(
        self, n: int, within: float, check: Callable[[], None] = lambda: None
    ) -> dict[str, Any]:
        """The counts once ``n`` distinct ids are acknowledged (TimeoutError after ``within``
        seconds, with the counts reached); ``check`` raises to stop waiting earlier."""
        deadline = time.monotonic() + within
        while (counts := await self.counts())["distinct"] < n:
            check()
            if counts["rejected"]:
                raise RuntimeError(f"the receiver refused signatures: {counts}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{n} deliveries not acknowledged in {within:.0f}s: {counts}")
            # The round ends at the receiver's own timestamp: polling often buys no precision.
            await asyncio.sleep(0.05)
        return counts

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)


@dataclass
class _Run:
    """What the rounds of both senders share."""

    receiver: Receiver
    redis: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]
    store: DeliveryStore
    dispatcher: Dispatcher
    endpoint: Endpoint
    raw: httpx.AsyncClient
    concurrency: int
    folder: Path

    def cpu(self) -> tuple[float, float, float, float]:
        """CPU so far of: the workers, this process, Redis, the receiver."""
        return (sum(cpu_seconds(w.pid) for w in self.workers), cpu_seconds(os.getpid()),
                cpu_seconds(self.redis.pid), self.receiver.cpu())  # fmt: skip

    def within(self, n: int) -> float:
        return 60 + n / 50

    async def notifier_round(self, deliveries: Sequence[Delivery]) -> Round:
        await self.receiver.reset()
        before = self.cpu()
        start = time.monotonic()
        now = datetime.now(UTC)
        await self.dispatcher.schedule(
            [Timer(at=now, job=Attempt(scope=d.scope, delivery_id=d.id)) for d in deliveries]
        )
        scheduled = time.monotonic() - start
        try:
            counts = await self.receiver.wait_for(
                len(deliveries), self.within(len(deliveries)), self.check_workers
            )
        except (TimeoutError, RuntimeError) as exc:
            raise RuntimeError(f"{exc}\n{self.worker_logs()}") from None
        await self.recorded(deliveries)
        after = self.cpu()
        return Round(
            seconds=counts["last_new_at"] - start, delivered=counts["distinct"],
            answered=counts["answered"], sender_cpu_s=after[0] - before[0],
            redis_cpu_s=after[2] - before[2], receiver_cpu_s=after[3] - before[3],
            schedule_s=scheduled,
        )  # fmt: skip

    async def recorded(self, deliveries: Sequence[Delivery]) -> None:
        """Wait until the store lists every one of ``deliveries`` delivered (they are the
        newest: ids are time-ordered, and each round's are made after the previous)."""
        wanted = {d.id for d in deliveries}
        deadline = time.monotonic() + 30
        while True:
            listed = await self.store.list(ENDPOINT, limit=len(wanted), status="delivered")
            missing = len(wanted - {d.id for d in listed})
            if not missing:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"acknowledged, but {missing} not recorded delivered")
            await asyncio.sleep(0.02)

    async def raw_round(self, deliveries: Sequence[Delivery]) -> Round:
        await self.receiver.reset()
        url, secret = self.endpoint.url, self.endpoint.secret
        pending = iter(deliveries)
        failed: list[int] = []

        async def sender() -> None:
            for delivery in pending:
                signed = headers(secret, delivery.id, int(time.time()), delivery.payload)
                response = await self.raw.post(url, content=delivery.payload, headers=signed)
                if not 200 <= response.status_code < 300:
                    failed.append(response.status_code)

        before = self.cpu()
        start = time.monotonic()
        await asyncio.gather(*(sender() for _ in range(self.concurrency)))
        after = self.cpu()
        if failed:
            raise RuntimeError(f"raw: {len(failed)} posts failed, e.g. HTTP {failed[0]}")
        counts = await self.receiver.wait_for(len(deliveries), 10)
        return Round(
            seconds=counts["last_new_at"] - start, delivered=counts["distinct"],
            answered=counts["answered"], sender_cpu_s=after[1] - before[1],
            redis_cpu_s=after[2] - before[2], receiver_cpu_s=after[3] - before[3],
        )  # fmt: skip

    def check_workers(self) -> None:
        for worker in self.workers:
            if worker.poll() is not None:
                raise RuntimeError(f"a notifier worker exited with {worker.returncode}")

    def worker_logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text()[-3000:]}"
            for log in sorted(self.folder.glob("worker*.log"))
        )


async def run(
    deliveries: int = 2_000,
    workers: int = 1,
    threads: int = 8,
    rounds: int = 3,
    progress: Callable[[str], None] = lambda _: None,
) -> WebhookBench:
    """Start the processes, measure both senders (``rounds`` each after a warm-up), stop."""
    with tempfile.TemporaryDirectory(prefix="notifier-bench-") as tmp, processes() as procs:
        folder = Path(tmp)
        redis_port, receiver_port = free_port(), free_port()
        redis = spawn(redis_command(redis_port, folder))
        procs.append(redis)
        secret = new_secret()
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
        receiver_proc = spawn(
            [sys.executable, "-m", "notifier.bench.webhook_receiver", str(receiver_port)],
            env={**env, SECRET_ENV: secret}, log=folder / "receiver.log",
        )  # fmt: skip
        procs.append(receiver_proc)
        config_path = folder / "notifier.toml"
        config_path.write_text(_TOML.format(url=f"redis://127.0.0.1:{redis_port}/0"))
        env.update(NOTIFIER_CONFIG=str(config_path), NOTIFIER_SECRET=SECRET)
        await wait_port(redis_port, redis)
        await wait_port(receiver_port, receiver_proc)
        worker_cmd = [sys.executable, "-m", "notifier.cli", "worker", "--processes", "1",
                      "--threads", str(threads), "--log-level", "warning"]  # fmt: skip
        worker_procs = [
            spawn(worker_cmd, env=env, log=folder / f"worker{n}.log") for n in range(workers)
        ]
        procs.extend(worker_procs)
        config = Config.load(config_path, env=env)
        manager = open_manager(config)
        receiver = Receiver(receiver_proc, f"http://127.0.0.1:{receiver_port}")
        raw = httpx.AsyncClient(
            timeout=httpx.Timeout(config.delivery.webhook.timeout_s), follow_redirects=False,
            limits=httpx.Limits(max_connections=workers * threads),
            headers={"user-agent": "bench-raw-httpx/1", "content-type": "application/json"},
        )  # fmt: skip
        try:
            store = manager.escalation.store
            endpoint = Endpoint(id=ENDPOINT, url=f"{receiver.url}/hooks", secret=secret,
                                created_at=datetime.now(UTC))  # fmt: skip
            await store.put_endpoint(endpoint)
            bench = _Run(receiver, redis, worker_procs, store, manager.dispatcher, endpoint,
                         raw, workers * threads, folder)  # fmt: skip
            return await _measure(bench, deliveries, workers, threads, rounds, progress)
        finally:
            await raw.aclose()
            await receiver.http.aclose()
            await manager.close()


async def _measure(
    bench: _Run, n: int, workers: int, threads: int, rounds: int,
    progress: Callable[[str], None],
) -> WebhookBench:  # fmt: skip
    mine = Side(f"notifier {workers}x{threads}", bench.concurrency)
    theirs = Side("raw httpx", bench.concurrency)
    body_bytes = 0
    for r in range(-1, rounds):  # round -1 warms up and is not counted
        made = batch(n, r, datetime.now(UTC))
        body_bytes = len(made[0].payload)
        await _claim(bench.store, made)
        label = "warm-up" if r < 0 else f"round {r + 1}/{rounds}"
        progress(f"{label}: notifier, {n:,} webhooks")
        a = await bench.notifier_round(made)
        progress(f"{label}: raw httpx, {n:,} webhooks")
        b = await bench.raw_round(made)
        if r >= 0:
            mine.rounds.append(a)
            theirs.rounds.append(b)
    return WebhookBench(n, workers, threads, body_bytes, mine, theirs)


async def _claim(store: DeliveryStore, deliveries: Sequence[Delivery]) -> None:
    """Claim every delivery (64 at once), as ``Escalation`` does when it decides them."""
    limit = asyncio.Semaphore(64)

    async def one(delivery: Delivery) -> None:
        async with limit:
            _, created = await store.claim(delivery)
            if not created:
                raise RuntimeError(f"delivery {delivery.id} was claimed before")

    await asyncio.gather(*(one(d) for d in deliveries))


def _sender(r: Round) -> float:
    return r.sender_cpu_s


def table(bench: WebhookBench) -> str:
    """Both senders' figures and the notifier / raw ratio."""
    rows = [
        f"{'sender':<17} {'in flight':>9} {'deliv/s':>8} {'sender CPU':>11} {'Redis CPU':>10} "
        f"{'receiver CPU':>13} {'dups':>5}"
    ]
    for side in (bench.notifier, bench.raw):
        dups = sum(r.answered - r.delivered for r in side.rounds)
        rows.append(
            f"{side.name:<17} {side.concurrency:>9} {side.deliveries_per_s:>8,.0f} "
            f"{side.cpu_us(_sender):>8.0f} µs "
            f"{side.cpu_us(lambda r: r.redis_cpu_s):>7.0f} µs "
            f"{side.cpu_us(lambda r: r.receiver_cpu_s):>10.0f} µs {dups:>5}"
        )
    schedule = statistics.median(r.schedule_s for r in bench.notifier.rounds)
    rate = ratio(bench.notifier.deliveries_per_s, bench.raw.deliveries_per_s)
    cpu = ratio(bench.notifier.cpu_us(_sender), bench.raw.cpu_us(_sender))
    rows.append(f"ratio notifier/raw: deliveries/s {rate}, sender CPU per delivery {cpu}")
    rows.append(
        f"{bench.deliveries:,} webhooks a round (bodies {bench.body_bytes:,} bytes), medians of "
        f"{len(bench.notifier.rounds)} rounds; CPU per delivery; raw: one httpx.AsyncClient "
        f"with {bench.raw.concurrency} posts in flight (= workers x threads); scheduling "
        f"the attempt timers took {schedule * 1000:.0f} ms of notifier's time"
    )
    return "\n".join(rows)
