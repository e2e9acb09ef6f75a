"""The throughput helper runs end to end (figures are reported, never asserted: timings vary)."""

from __future__ import annotations

import pytest

from tests.fanout.throughput import measure

pytestmark = pytest.mark.single_redis


async def test_the_throughput_measurement_runs_through_real_workers(redis_url: str) -> None:
    figures = await measure(redis_url, followers=2_000, processes=1, threads=2, repeats=1)
    assert len(figures.fanout_writes_per_s) == len(figures.raw_zadd_writes_per_s) == 1
    assert "feed-writes/s" in figures.summary()
    print(figures.summary())
