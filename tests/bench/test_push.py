"""The push benchmark runs end to end (small): every client of both servers gets every frame.
Timings are printed by the benchmark, never asserted here."""

from __future__ import annotations

import shutil

import pytest

from notifier.bench import push
from tests.services import unavailable

pytestmark = pytest.mark.timeout(120)


async def test_push_bench_delivers_every_frame_on_both_servers() -> None:
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
    results = await push.run(clients=20, rounds=2)
    assert [r.name for r in results] == ["notifier", "raw websockets"]
    for result in results:
        assert result.lost == 0
        assert len(result.latencies_ms) == 40
        assert result.p50_ms <= result.p99_ms
    assert results[0].frame_bytes == results[1].frame_bytes > 100
    assert "ratio notifier/raw" in push.table(results)
