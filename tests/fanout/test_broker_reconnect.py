"""What the broker does for dramatiq's consumer threads when its Redis connection drops.

dramatiq's consumer thread keeps a delay queue's jobs in memory until they are due and, on
a lost connection, forgets them and starts a new consumer; the jobs stay in the process's
acknowledgement set. These tests do what that thread does, on a real redis-server: the new
consumer must get the forgotten jobs back. And a lost connection must raise the error the
thread restarts on (any other error ended the thread: tests/delivery/test_redis_restart.py
runs the whole story with worker processes)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.broker import Consumer
from dramatiq.common import dq_name
from dramatiq.errors import ConnectionClosed

from notifier.fanout.broker import BrokerUnavailable, make_broker
from notifier.fanout.settings import FanoutSettings
from tests.services import free_port

pytestmark = [pytest.mark.timeout(30), pytest.mark.single_redis]


def job() -> dramatiq.Message[Any]:
    return dramatiq.Message(queue_name="jobs", actor_name="a", args=(), kwargs={}, options={})


def fetch(consumer: Consumer, within: float = 3) -> list[str]:
    """The ids of the jobs ``consumer`` yields within ``within`` seconds."""
    got = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        message = next(consumer)
        if message is not None:
            got.append(message.message_id)
    return got


def test_delayed_jobs_a_dropped_consumer_held_come_back_with_the_next_one(
    redis_url: str,
) -> None:
    settings = FanoutSettings(namespace=f"rc{uuid.uuid4().hex[:8]}", poll_ms=50)
    broker = make_broker(settings, redis_url)
    broker.declare_queue("jobs")
    delayed = [job() for _ in range(3)]
    for message in delayed:
        broker.enqueue(message, delay=60_000)
    first = broker.consume(dq_name("jobs"), prefetch=10, timeout=50)
    assert sorted(fetch(first, within=1)) == sorted(m.message_id for m in delayed)
    # The connection drops: dramatiq forgets what the consumer held and starts a new one.
    second = broker.consume(dq_name("jobs"), prefetch=10, timeout=50)
    assert sorted(fetch(second, within=1)) == sorted(m.message_id for m in delayed)
    broker.close()


def test_a_lost_connection_raises_what_dramatiq_restarts_a_consumer_on() -> None:
    settings = FanoutSettings(namespace=f"rc{uuid.uuid4().hex[:8]}")
    broker = make_broker(settings, f"redis://127.0.0.1:{free_port()}/0")  # nobody listens
    broker.declare_queue("jobs")
    with pytest.raises(BrokerUnavailable) as raised:
        broker.enqueue(job())
    assert isinstance(raised.value, ConnectionClosed)  # dramatiq: restart the consumer
    assert isinstance(raised.value, redis.ConnectionError)  # notifier: an outage
    with pytest.raises(ConnectionClosed):
        broker.consume(dq_name("jobs"))  # the orphan check of a new delay-queue consumer
    broker.close()
