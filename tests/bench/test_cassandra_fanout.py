"""The Cassandra fanout benchmark runs end to end (tiny): notifier's workers fill every
follower's timeline on the node the tests use (a fresh keyspace, dropped after), and the raw
driver inserts as many rows. Figures are printed by the benchmark, never asserted here.

Needs Cassandra: ``NOTIFIER_TEST_CASSANDRA=start`` (or ``=host:port``, or ``CI=true``);
skipped loudly otherwise, like every Cassandra test."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from notifier.bench import cassandra_fanout
from notifier.cli import main
from tests.services import unavailable

pytestmark = [pytest.mark.timeout(300), pytest.mark.cassandra]


@pytest.fixture
def redis_server() -> None:
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")


async def test_the_bench_fans_out_into_every_timeline_and_runs_the_raw_driver(
    cassandra_hosts: str, redis_server: None
) -> None:
    result = await cassandra_fanout.run(
        followers=40, workers=1, repeats=2, burst=3, cassandra=cassandra_hosts
    )
    # run() itself checks that sampled timelines hold every activity posted, exactly once.
    assert (result.followers, result.burst, len(result.runs), len(result.raw_runs)) == (
        40,
        3,
        2,
        2,
    )
    assert result.notifier > 0 and result.raw > 0 and result.ratio > 0
    assert result.worker_cpu_us > 0 and result.raw_cpu_us > 0
    assert "raw driver/s" in cassandra_fanout.table([result])


def test_the_cli_names_the_scenario(cassandra_hosts: str, redis_server: None) -> None:
    args = ["bench", "fanout", "--storage", "cassandra", "--cassandra", cassandra_hosts,
            "--followers", "10", "--burst", "2", "--repeats", "1", "--workers", "1",
            "--json"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert '"ratio"' in result.stdout
    refused = CliRunner().invoke(main, ["bench", "fanout", "--storage", "cassandra",
                                        "--feeds", "notification"])  # fmt: skip
    assert refused.exit_code == 2 and "flat feeds" in refused.output
