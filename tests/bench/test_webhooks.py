"""The webhook benchmark runs end to end (tiny): notifier's workers and the raw client each get
every delivery acknowledged exactly once by the receiver, and the store records notifier's
delivered. Timings are printed by the benchmark, never asserted here."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from click.testing import CliRunner

from notifier.bench import webhooks
from notifier.bench.webhook_receiver import signed_id
from notifier.cli import main
from notifier.delivery.signing import headers, new_secret, secret_key
from tests.services import unavailable

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def redis_server() -> None:
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")


async def test_both_senders_deliver_every_id_exactly_once(redis_server: None) -> None:
    bench = await webhooks.run(deliveries=50, workers=1, threads=4, rounds=1)

    assert (bench.deliveries, bench.workers, bench.threads) == (50, 1, 4)
    assert 900 < bench.body_bytes < 1_500
    for side in (bench.notifier, bench.raw):
        assert side.concurrency == 4
        assert len(side.rounds) == 1
        # run() waited for the store to list all 50 delivered; here: none missing, none twice.
        assert [(r.delivered, r.answered) for r in side.rounds] == [(50, 50)]
        assert side.deliveries_per_s > 0
    assert bench.notifier.rounds[0].sender_cpu_s > 0
    assert bench.ratio > 0
    assert "ratio notifier/raw" in webhooks.table(bench)


def test_the_cli_reports_both_senders_as_json(redis_server: None) -> None:
    args = ["bench", "webhooks", "--deliveries", "20", "--rounds", "1", "--workers", "1",
            "--threads", "2", "--json"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [r["name"] for r in report["results"]] == ["notifier 1x2", "raw httpx"]
    assert [r["rounds"][0]["delivered"] for r in report["results"]] == [20, 20]
    assert report["ratio"] > 0


def test_the_receiver_checks_signatures_as_the_standard_says() -> None:
    secret, body, now = new_secret(), b'{"type":"notification.unseen"}', int(time.time())
    signed = {k.encode(): v.encode() for k, v in headers(secret, "msg_1", now, body).items()}
    key = secret_key(secret)

    assert signed_id(key, signed, body, now) == "msg_1"
    assert signed_id(key, signed, body + b" ", now) is None
    assert signed_id(key, signed, body, now + 301) is None
    assert signed_id(secret_key(new_secret()), signed, body, now) is None
    assert signed_id(key, {b"webhook-id": b"msg_1"}, body, now) is None
