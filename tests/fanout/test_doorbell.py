"""Idle Redis consumers wait on their queue's doorbell, so a new job wakes them at once
instead of after their poll timer (here a minute: without the doorbell this test times out)."""

from __future__ import annotations

import threading
import time
import uuid

import dramatiq
import pytest
import redis

from notifier.fanout.broker import make_broker
from notifier.fanout.settings import FanoutSettings

pytestmark = [pytest.mark.timeout(30), pytest.mark.single_redis]


def test_an_idle_consumer_waits_on_the_doorbell_and_wakes_on_enqueue(redis_url: str) -> None:
    settings = FanoutSettings(namespace=f"bell{uuid.uuid4().hex[:8]}", poll_ms=60_000)
    broker = make_broker(settings, redis_url)
    broker.declare_queue("jobs")
    consumer = broker.consume("jobs", prefetch=1, timeout=settings.poll_ms)
    message = dramatiq.Message(queue_name="jobs", actor_name="a", args=(), kwargs={}, options={})
    received: list[object] = []

    def consume() -> None:
        got = None
        while got is None:  # a miss, the doorbell wait, then the job
            got = next(consumer)
        received.append(got)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    client = redis.Redis.from_url(redis_url)
    bell = f"{settings.namespace}:jobs.bell"
    deadline = time.monotonic() + 10
    while not any(
        c.get("cmd") == "blpop"
        for c in client.client_list()  # blocked on the doorbell
    ):
        assert time.monotonic() < deadline, "the idle consumer never waited on the doorbell"
        time.sleep(0.02)
    assert client.exists(bell) == 0
    broker.enqueue(message)
    thread.join(10)  # woken by the doorbell, not by its one-minute poll timer
    assert not thread.is_alive()
    [got] = received
    assert getattr(got, "message_id", None) == message.message_id
    consumer.close()
    client.close()
    broker.close()


def test_the_doorbell_stays_bounded_when_nobody_listens(redis_url: str) -> None:
    settings = FanoutSettings(namespace=f"bell{uuid.uuid4().hex[:8]}")
    broker = make_broker(settings, redis_url)
    broker.declare_queue("jobs")
    for _ in range(200):
        broker.enqueue(
            dramatiq.Message(queue_name="jobs", actor_name="a", args=(), kwargs={}, options={})
        )
    client = redis.Redis.from_url(redis_url)
    assert client.llen(f"{settings.namespace}:jobs.bell") == 64
    client.close()
    broker.close()
