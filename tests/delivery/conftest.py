"""Delivery fixtures: a manager whose config has escalation rules with short delays, a local
webhook receiver, the SMTP receiver (tests/delivery/smtp.py), and (for Redis and Cassandra)
real ``notifier worker`` processes that run the timers and attempts, so a test can SIGKILL one.

Clocks are driven by configuration: rules fire after fractions of a second and digest windows
last one second, so tests wait seconds, never minutes.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from notifier.config import Config
from notifier.delivery.engine import Escalation
from notifier.delivery.model import Delivery, Endpoint
from notifier.delivery.signing import new_secret
from notifier.fanout.manager import Manager
from notifier.fanout.runtime import open_manager
from notifier.model import Activity
from notifier.service import Notifier
from tests import cassandra_node
from tests.delivery.receiver import WebhookReceiver
from tests.delivery.smtp import SmtpReceiver, certificate, receiving, smtp
from tests.fanout.conftest import FANOUT, WorkerPool, pytest_runtest_makereport, toml, wait_until
from tests.services import broker_for

__all__ = ["certificate", "pytest_runtest_makereport", "smtp"]

SECRET = "d" * 40
FEEDS = """
[feeds.user]
kind = "flat"
max_length = 1000

[feeds.notification]
kind = "notification"
max_length = 100
rule = "{{ verb }}:{{ object }}"

[feeds.digest]
kind = "notification"
max_length = 100
fanout = true
rule = "{{ verb }}:{{ actor }}"

[verbs]
like = "liked"
comment = "commented on"
invoice = "invoiced"

[categories.social]
verbs = ["like", "comment"]

[categories.billing]
critical = true
verbs = ["invoice"]
"""


def delivery_toml(smtp_port: int, **overrides: Any) -> str:
    """The [delivery] section of the tests: short delays, quick retries, local receivers."""
    settings = {
        "public_url": "http://127.0.0.1:8999",
        "min_backoff_ms": 50,
        "max_backoff_ms": 400,
        "max_attempts": 3,
        **overrides.pop("top", {}),
    }
    rules = overrides.pop(
        "rules",
        {"default": {"webhook": '{ after_s = 0.3, until = "seen" }',
                     "email": '{ after_s = 0.3, until = "read" }'}},
    )  # fmt: skip
    lines = ["[delivery]"]
    lines += [
        f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in settings.items()
    ]
    webhook_timeout = overrides.pop("webhook_timeout_s", 2)
    email_timeout = overrides.pop("email_timeout_s", 5)
    lines += ["[delivery.webhook]", "allow_private = true", f"timeout_s = {webhook_timeout}"]
    lines += ["[delivery.digest]", f"window_s = {overrides.pop('window_s', 1.0)}"]
    lines += ["[delivery.email]", 'host = "127.0.0.1"', f"port = {smtp_port}",
              f"timeout_s = {email_timeout}"]  # fmt: skip
    for category, table in rules.items():
        lines.append(f"[delivery.rules.{category}]")
        lines += [f"{channel} = {rule}" for channel, rule in table.items()]
    return "\n".join(lines) + "\n"


def make_config(
    storage_url: str, prefix: str, smtp_port: int, broker_url: str | None = None, **delivery: Any
) -> tuple[Config, Path]:
    fanout = {**FANOUT, "namespace": f"ns{prefix}", **delivery.pop("fanout", {})}
    broker = broker_url or (broker_for(storage_url) if storage_url != "memory://" else None)
    if broker is not None:
        fanout["broker_url"] = broker
    path = Path(tempfile.mkdtemp(prefix="notifier-delivery-")) / "notifier.toml"
    path.write_text(toml(storage_url, prefix, fanout, FEEDS) + delivery_toml(smtp_port, **delivery))
    return Config.load(path, env={"NOTIFIER_SECRET": SECRET}), path


@dataclass
class Stack:
    """The producing side (a manager), its workers, and the receivers deliveries reach."""

    backend: str
    config: Config
    manager: Manager
    webhooks: WebhookReceiver
    smtp: SmtpReceiver
    pool: WorkerPool | None = None
    mail: ExitStack = field(default_factory=ExitStack)
    """Stops the SMTP server."""

    @property
    def app(self) -> Notifier:
        return Notifier(self.config, self.manager.storage)

    @property
    def store(self) -> Any:
        return self.manager.escalation.store

    async def endpoint(self, name: str, categories: frozenset[str] | None = None) -> Endpoint:
        """Register an endpoint posting to ``/<name>`` of the receiver."""

        endpoint = Endpoint(
            id=f"ep_{name}", url=self.webhooks.url(f"/{name}"), secret=new_secret(),
            categories=categories, created_at=datetime.now(UTC),
        )  # fmt: skip
        self.webhooks.secrets[f"/{name}"] = endpoint.secret
        await self.store.put_endpoint(endpoint)
        return endpoint

    async def notify(
        self, user: str, actor: str, verb: str = "like", obj: str = "photo:1"
    ) -> Activity:
        """``actor`` does ``verb`` to ``obj``; the activity goes to ``user``'s notifications."""
        activity = self.app.activity(
            actor=actor, verb=verb, object=obj, to=[f"notification:{user}"]
        )
        await self.manager.add_activity(activity)
        return activity


async def open_stack(
    backend: str, storage_url: str, broker_url: str | None = None, **delivery: Any
) -> Stack:
    webhooks, mail = WebhookReceiver(), ExitStack()
    await webhooks.start()
    smtp = mail.enter_context(receiving())
    prefix = f"d{uuid.uuid4().hex[:10]}"
    config, path = make_config(storage_url, prefix, smtp.port, broker_url, **delivery)
    pool = None
    if backend != "memory":
        pool = WorkerPool(path, threads=4, env={"NOTIFIER_SECRET": SECRET})
        pool.start(1)
    return Stack(backend, config, open_manager(config), webhooks, smtp, pool, mail)


async def close_stack(stack: Stack, failed: bool = False) -> None:
    if failed and stack.pool is not None:
        print(stack.pool.output())
    await stack.manager.close()
    if stack.pool is not None:
        stack.pool.stop()
    await stack.webhooks.stop()
    stack.mail.close()


StackFactory = Callable[..., Awaitable[Stack]]


def storage_for(request: pytest.FixtureRequest, backend: str) -> tuple[str, str | None]:
    """The storage URL of ``backend`` for a stack, and its broker URL when that is not the
    storage's own Redis (Cassandra: the session's redis-server)."""
    if backend == "memory":
        return "memory://", None
    if backend == "redis":
        return request.getfixturevalue("storage_redis_url"), None
    hosts = request.getfixturevalue("cassandra_hosts")
    cassandra_node.connection(hosts)  # the test keyspace exists and is migrated
    return cassandra_node.url(hosts), request.getfixturevalue("redis_url")


@pytest.fixture(params=["memory", "redis", "cassandra"])
async def make_stack(request: pytest.FixtureRequest) -> AsyncIterator[StackFactory]:
    """Opens stacks on memory (in-process workers), Redis or Cassandra (a worker process, the
    broker on the session's redis-server), with the [delivery] settings given
    (``delivery_toml``), closed after the test."""
    backend = request.param
    made: list[Stack] = []

    async def make(**delivery: Any) -> Stack:
        url, broker = storage_for(request, backend)
        stack = await open_stack(backend, url, broker, **delivery)
        made.append(stack)
        return stack

    yield make
    report = getattr(request.node, "rep_call", None)
    for stack in made:
        await close_stack(stack, failed=report is not None and report.failed)


@pytest.fixture
async def stack(make_stack: StackFactory) -> Stack:
    """A stack with the default test rules (webhook after 0.3 s unseen, email digest after
    0.3 s unread, one-second windows)."""
    return await make_stack()


@contextmanager
def dies_once_before_scheduling(
    escalation: Escalation, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The next scheduling of attempts by ``escalation`` raises, as if its worker died right
    after deciding; the ones after it work."""
    real = escalation._attempt_now
    calls = 0

    async def dies_once(deliveries: Sequence[Delivery]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("the worker died")
        await real(deliveries)

    monkeypatch.setattr(escalation, "_attempt_now", dies_once)
    yield
    assert calls >= 1, "nothing was decided"


async def undelivered(
    stack: Stack, endpoints: Iterable[str], users: list[str], addressed: list[str]
) -> str:
    """What a fault test left undelivered, for its failure output: each endpoint's deliveries
    that are not delivered (or missing), each addressed user without a delivered digest,
    and what the broker still holds."""
    lines = []
    for name in endpoints:
        stored = await stack.store.list(f"ep_{name}", limit=500)
        lines.append(f"ep_{name}: {len(stored)} decided, missing users "
                     f"{sorted(set(users) - {d.user for d in stored})}")  # fmt: skip
        lines += [f"  {d.user} {d.id} {d.status} attempts={d.attempts} "
                  f"lease_until={d.lease_until:%H:%M:%S.%f} error={d.last_error!r}"
                  for d in stored if d.status != "delivered"]  # fmt: skip
    for user in addressed:
        digests = await stack.store.list(user, limit=10)
        if not any(d.status == "delivered" for d in digests):
            lines.append(f"digest {user}: {[(d.id, d.status, d.attempts) for d in digests]}")
    lines.append(f"now {datetime.now(UTC):%H:%M:%S.%f}")
    try:
        lines.append(f"broker: {await broker_state(stack)}")
    except Exception as exc:  # the summary above is what matters
        lines.append(f"broker state unavailable: {exc!r}")
    return "\n".join(lines)


async def broker_state(stack: Stack) -> dict[str, int]:
    """Sizes of the broker's Redis keys (queues, delay queues, acks, heartbeats)."""
    import redis.asyncio as aioredis

    url = stack.config.fanout.broker_url or stack.config.storage_url
    client = aioredis.Redis.from_url(url)
    try:
        found = {}
        namespace = stack.config.fanout.namespace
        async for key in client.scan_iter(match=f"{namespace}*"):
            kind = (await client.type(key)).decode()
            size = {"list": client.llen, "set": client.scard, "zset": client.zcard,
                    "hash": client.hlen}.get(kind)  # fmt: skip
            found[key.decode()] = await size(key) if size else -1
        return found
    finally:
        await client.aclose()


async def delivered_exactly_once(
    stack: Stack, endpoints: str, users: list[str], addressed: list[str], within: float
) -> list[Delivery]:
    """Wait until every user's group was delivered to each endpoint (``"ab"``: ``ep_a`` and
    ``ep_b``) and every addressed user's digest too (on a timeout, print what is left:
    ``undelivered``); then, a window later, check it happened exactly once: one decision
    per (user, endpoint), each acknowledged under its id, and one digest per addressed
    user, every message of it under its one Message-ID. The webhook deliveries."""

    async def all_delivered() -> bool:
        try:
            hooks = [await stack.store.list(f"ep_{n}", limit=500, status="delivered")
                     for n in endpoints]  # fmt: skip
            digests = [await stack.store.list(u, limit=10, status="delivered")
                       for u in addressed]  # fmt: skip
        except (ConnectionError, redis.ConnectionError):  # ours, right after a Redis restart
            return False
        return sum(map(len, hooks)) == len(endpoints) * len(users) and all(digests)

    try:
        await wait_until(all_delivered, within=within, every=0.5)
    except AssertionError:
        print(await undelivered(stack, endpoints, users, addressed))
        raise
    await asyncio.sleep(3)  # a window more: no late second digest
    decided = []
    for name in endpoints:
        deliveries = await stack.store.list(f"ep_{name}", limit=500)
        assert sorted(d.user for d in deliveries) == users, name  # one per user: no twin
        assert {d.status for d in deliveries} == {"delivered"}
        acknowledged = {r.delivery_id for r in stack.webhooks.verified(f"/{name}")
                        if 200 <= r.status < 300}  # fmt: skip
        assert acknowledged == {d.id for d in deliveries}, name  # none lost
        decided += deliveries
    mails: dict[str, set[str]] = {}
    for received in stack.smtp.messages:
        mails.setdefault(received.rcpts[0], set()).add(received.message["Message-ID"])
    assert {rcpt: len(ids) for rcpt, ids in mails.items()} == {
        f"{u}@example.com": 1 for u in addressed
    }
    for user in addressed:
        [digest] = await stack.store.list(user, limit=10)
        assert digest.status == "delivered"
        assert mails[f"{user}@example.com"] == {f"<{digest.id}@localhost>"}
    return decided
