"""The fanout bench's CPU breakdown runs end to end (tiny): every process measured, the
Python steps sorted from real py-spy samples, Redis's commands named. Figures are printed by
the benchmark, never asserted here."""

from __future__ import annotations

import shutil

import pytest

from notifier.bench import breakdown
from notifier.bench import fanout as scenario
from tests.services import unavailable

pytestmark = [pytest.mark.timeout(300), pytest.mark.single_redis]


def test_samples_are_sorted_into_the_first_step_whose_markers_all_match() -> None:
    collapsed = (
        "Thread.run (t.py:1);Manager.run_chunk (m.py:2);Manager._publish (m.py:3);"
        "publish_changes (bus.py:4) 3\n"
        "Thread.run (t.py:1);Manager.run_chunk (m.py:2);RedisStorage.add_to_feeds (r.py:5) 5\n"
        "Thread.run (t.py:1);EpollSelector.select (s.py:6) 2\n"
    )
    steps = breakdown.classify(breakdown.parse_collapsed(collapsed), breakdown.WORKER_STEPS)
    assert steps == {
        "chunk: realtime publish": 3,
        "chunk: feed writes": 5,
        "event loop and other": 2,
    }


async def test_fanout_bench_breaks_one_activity_down_by_process_and_step() -> None:
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
    result = await scenario.run(followers=60, burst=3, repeats=1, workers=1, breakdown=True)
    cpu = result.breakdown
    assert cpu is not None and cpu.activities == 12 and cpu.followers == 60
    assert set(cpu.processes) == {"web", "workers", "redis"}
    redis_steps = [s.step for s in cpu.steps if s.process == "redis"]
    assert "storage flat_add" in redis_steps and "dramatiq dispatch" in redis_steps
    if breakdown.py_spy() is not None:
        assert cpu.sampled
        assert {s.process for s in cpu.steps} == {"web", "workers", "redis"}
    assert "where one activity's CPU goes" in breakdown.table(cpu)
