"""A job that finds its backend down waits for it in place (up to ``outage_wait_ms``) rather
than failing into a retry that must be enqueued on the Redis that is down."""

from __future__ import annotations

import pytest

from notifier.fanout.actors import FanoutActors
from notifier.fanout.broker import IN_PROCESS, make_broker
from notifier.fanout.jobs import ChunkJob, FanoutJob
from notifier.fanout.settings import FanoutSettings

CHUNK = {"op": "add", "actor": "ana", "activity_ids": ["0" * 26], "users": ["bo"]}


class Handler:
    def __init__(self, error: Exception, failures: int) -> None:
        self.error = error
        self.failures = failures
        self.calls = 0

    async def run_fanout(self, job: FanoutJob) -> None:
        raise AssertionError("not used")

    async def run_chunk(self, job: ChunkJob) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error


def actors(wait_ms: int, handler: Handler) -> FanoutActors:
    settings = FanoutSettings(outage_wait_ms=wait_ms)
    result = FanoutActors(make_broker(settings, IN_PROCESS), settings)
    result.bind(handler)
    return result


async def test_an_outage_is_waited_out_in_place() -> None:
    handler = Handler(ConnectionError("redis restarting"), failures=3)
    await actors(10_000, handler)._run_chunk(CHUNK)
    assert handler.calls == 4


async def test_past_the_wait_the_job_fails() -> None:
    handler = Handler(ConnectionError("redis gone"), failures=100)
    with pytest.raises(ConnectionError):
        await actors(0, handler)._run_chunk(CHUNK)
    assert handler.calls == 1


async def test_a_bug_is_not_an_outage() -> None:
    handler = Handler(KeyError("bug"), failures=1)
    with pytest.raises(KeyError):
        await actors(10_000, handler)._run_chunk(CHUNK)
    assert handler.calls == 1
