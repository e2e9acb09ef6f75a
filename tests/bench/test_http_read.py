"""The feed-read benchmark runs end to end (small): every server answers every request with
2xx and the same page. Timings are printed by the benchmark, never asserted here."""

from __future__ import annotations

import shutil

import pytest

from notifier.bench import http_read
from tests.services import unavailable

pytestmark = pytest.mark.timeout(120)


def test_http_read_bench_measures_notifier_and_baselines_on_the_same_page() -> None:
    if shutil.which("wrk") is None:
        unavailable("wrk is not installed (apt-get install wrk)")
    load = http_read.LoadSettings(threads=1, connections=4, duration_s=1, repetitions=1, warmup_s=0)
    bench = http_read.run(load, groups=26, actors_per_group=2)

    results = [bench.notifier, *bench.baselines]
    assert [r.path for r in results] == [http_read.FEED_PATH, *http_read.BASELINES]
    for result in results:
        assert len(result.runs) == 1
        assert all(run.requests > 0 and run.non_2xx == 0 for run in result.runs)
        assert result.p50_ms <= result.p99_ms
    assert len({r.body_bytes for r in results}) == 1
    assert bench.notifier.body_bytes > 10_000
    assert bench.ratio() > 0
    assert "ratio notifier/starlette JSON" in http_read.table(bench)
    assert bench.summary()["results"][0]["name"] == "notifier feed page"
