"""A worker stopped with SIGTERM (a deploy) in the middle of a fanout: it finishes the job it
is running, gives back the jobs it had fetched but not started, and exits; a new worker runs
those. No job is lost and none runs twice (and no heartbeat timeout is waited for)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.fanout.conftest import ROOT, Harness, redis_harness, wait_until

pytestmark = [pytest.mark.timeout(240), pytest.mark.single_redis]

#: What dramatiq 2.2 logs (DEBUG) as a worker's consumer takes a job from Redis into the
#: process (prefetched), and as a worker thread starts one.
FETCHED = re.compile(r"Pushing message '([0-9a-f-]+)' onto work queue\.$")
STARTED = re.compile(r"Received message .* with id '([0-9a-f-]+)'\.$")


def start_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``notifier worker``, one process and one thread, logging every job it fetches and
    starts. It prefetches 4 jobs per queue (dramatiq's own setting; 2 per thread by default),
    so that whenever it runs one it holds others it has not started."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env["dramatiq_queue_prefetch"] = "4"
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "notifier.fanout.cli", "worker", "--processes", "1",
             "--threads", "1", "--config", str(config), "--log-level", "debug"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            env=env,
        )  # fmt: skip


def job_ids(log: Path, pattern: re.Pattern[str]) -> list[str]:
    return [m[1] for line in log.read_text(errors="replace").splitlines()
            if (m := pattern.search(line))]  # fmt: skip


async def test_a_sigterm_gives_back_the_jobs_fetched_but_not_started_and_runs_none_twice(
    redis_url: str, pools: list[Harness], tmp_path: Path
) -> None:
    # A heartbeat timeout far beyond the test: whatever the stopped worker held comes back
    # because it gave it back, not because it was declared dead.
    harness = await redis_harness(
        redis_url, workers=0, threads=1, chunk_size=100, poll_ms=10,
        heartbeat_timeout_ms=600_000, sweep_interval_ms=1_000,
    )  # fmt: skip
    pools.append(harness)
    followers = [f"t{i:04d}" for i in range(8_000)]
    await harness.follow_all(followers, "ana")
    samples = followers[::100]  # the first user of every chunk
    post = harness.app().activity(actor="ana", verb="like", object="photo:1")
    await harness.manager.add_activity(post)
    assert harness.pool is not None
    config_path = harness.pool.config_path  # the worker processes' TOML
    old_log, new_log = tmp_path / "old-worker.log", tmp_path / "new-worker.log"
    old = start_worker(config_path, old_log)
    broker = aioredis.from_url(redis_url, decode_responses=True)
    namespace = harness.config.fanout.namespace
    try:

        async def some_chunks_done() -> bool:
            feeds = await harness.read_all("timeline", samples)
            return sum(1 for ids in feeds.values() if ids) >= len(samples) // 5

        await wait_until(some_chunks_done, within=90, every=0.01)
        old.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(old.wait, 60) == 0
        # What a worker holds stays in its acks sets (one per queue) until it acknowledges
        # it or gives it back.
        left = {key: await broker.scard(key)
                for key in await broker.keys(f"{namespace}:__acks__.*")}  # fmt: skip
        feeds = await harness.read_all("timeline", samples)
        done_at_stop = sum(1 for ids in feeds.values() if ids)

        new = start_worker(config_path, new_log)
        try:
            stopped_at = time.monotonic()
            await harness.manager.join(120)
            resumed_in = time.monotonic() - stopped_at
        finally:
            new.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(new.wait, 30) == 0
    finally:
        if old.poll() is None:
            old.kill()
        await broker.aclose()

    by_old, by_new = job_ids(old_log, STARTED), job_ids(new_log, STARTED)
    given_back = set(job_ids(old_log, FETCHED)) - set(by_old)
    print(
        f"\nstopped with {done_at_stop}/{len(samples)} chunks done, {len(given_back)} job(s) "
        f"fetched and not started; the rest done {resumed_in:.1f} s later"
    )
    assert done_at_stop < len(samples), "the SIGTERM must land in the middle of the fanout"
    assert given_back, "the stopped worker must have held jobs it had not started"
    assert set(left.values()) <= {0}, f"jobs left with the stopped worker: {left}"
    # Every job ran exactly once, on one worker or the other; the given-back ones on the new.
    runs = by_old + by_new
    assert sorted(i for i in set(runs) if runs.count(i) > 1) == []
    assert given_back <= set(by_new)
    assert "fanout worker stopped" in old_log.read_text()
    timelines = await harness.read_all("timeline", followers)
    assert {user for user, ids in timelines.items() if ids != [post.id]} == set()
    digests = await harness.counts_all("digest", followers)
    assert {user for user, counts in digests.items() if counts != (1, 1, 1)} == set()


async def test_a_stopping_worker_beats_until_its_job_ends_so_no_other_worker_takes_it(
    redis_url: str, tmp_path: Path
) -> None:
    """A job still running a heartbeat timeout after the SIGTERM (here: waiting out a storage
    outage in place) stays its worker's: the other worker does not take it for a dead
    worker's job and run it a second time."""
    import shutil
    import uuid

    from notifier.fanout.actors import FanoutActors
    from notifier.fanout.jobs import ChunkJob, Priority
    from notifier.fanout.runtime import open_manager
    from tests.fanout.conftest import make_config
    from tests.services import RedisServer, unavailable

    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
        return
    storage = RedisServer(binary, persistent=True)
    storage.start()
    config, path = make_config(
        storage.url, f"st{uuid.uuid4().hex[:8]}", broker_url=redis_url,
        heartbeat_timeout_ms=1_000, sweep_interval_ms=200, outage_wait_ms=20_000,
        poll_ms=20,
    )  # fmt: skip
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    workers = [start_worker(path, logs[0]), start_worker(path, logs[1])]
    manager = open_manager(config)
    try:

        async def both_ready() -> bool:
            return all("fanout worker ready" in log.read_text(errors="replace") for log in logs)

        await wait_until(both_ready, within=60)
        actors = manager.dispatcher
        assert isinstance(actors, FanoutActors)
        storage.stop()  # the job's writes wait for the storage to come back
        job = ChunkJob(op="remove", actor="ana", activity_ids=["x"], users=["bo"])
        await actors.send([(Priority.HIGH, job)])

        async def running() -> bool:
            return any(job_ids(log, STARTED) for log in logs)

        await wait_until(running, within=30)
        holder = 0 if job_ids(logs[0], STARTED) else 1
        workers[holder].send_signal(signal.SIGTERM)
        # Well past the heartbeat timeout: a worker that stopped beating at the SIGTERM would
        # be declared dead by the other's sweeps, and its job handed over.
        await asyncio.sleep(4)
        storage.start()
        assert await asyncio.to_thread(workers[holder].wait, 60) == 0
        await manager.join(30)
        await asyncio.sleep(1)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                await asyncio.to_thread(worker.wait, 30)
        await manager.close()
        storage.stop()
    runs = job_ids(logs[0], STARTED) + job_ids(logs[1], STARTED)
    assert len(runs) == 1, f"the job ran {len(runs)} times: {runs}"
