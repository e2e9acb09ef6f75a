"""The operator's commands, run as an operator runs them (the ``notifier`` script in a
subprocess): ``notifier token``, what ``notifier demo`` prints (its curl line run for real),
and ``notifier deadletters`` on a real Redis broker with a real worker process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from dramatiq.brokers.redis import RedisBroker

from notifier.demo import SHOWN
from notifier.fanout import deadletters
from notifier.fanout.actors import FanoutActors
from notifier.fanout.jobs import ChunkJob, Priority
from notifier.fanout.runtime import open_manager
from notifier.feedgroups import FeedGroup
from notifier.feeds import entries_for
from notifier.service import Notifier
from notifier.storage.base import Entry, FeedChange
from notifier.storage.memory import MemoryStorage
from notifier.web.app import create_app
from tests.fanout.conftest import WorkerPool, make_config, wait_until
from tests.services import RedisServer, restartable_redis, running_demo
from tests.web.conftest import API_KEY, SECRET, close_services, make_services, server_settings

NOTIFIER = Path(sys.executable).with_name("notifier")
Completed = subprocess.CompletedProcess[str]


def run(
    args: Sequence[str], env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``notifier ARGS`` with only the NOTIFIER_ variables given (none from this shell)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    return subprocess.run(
        [str(NOTIFIER), *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


SERVER_ENV = {"NOTIFIER_SECRET": SECRET, "NOTIFIER_API_KEYS": API_KEY}


# -- notifier token ----------------------------------------------------------------------------
async def test_token_prints_a_token_the_server_accepts_for_that_user_and_its_feeds() -> None:
    before = int(time.time())
    result = run(["token", "bo", "--ttl", "120", "--feeds", "notification"], SERVER_ENV)
    after = int(time.time())
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert "\n" not in token  # stdout is the token alone: $(notifier token bo) works
    assert "expires" in result.stderr

    services = make_services(MemoryStorage(), server_settings())
    claims = services.tokens.verify(token)
    assert claims.user == "bo"
    assert claims.feeds == ("notification",)
    assert before + 120 <= claims.expires <= after + 120
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        auth = {"Authorization": f"Bearer {token}"}
        assert (await http.get("/v1/me/feeds/notification", headers=auth)).status_code == 200
        assert (await http.get("/v1/me/feeds/timeline", headers=auth)).status_code == 403
    await close_services(services)

    # Signed with the secret of the environment: another server's secret refuses it.
    other = make_services(MemoryStorage(), server_settings(NOTIFIER_SECRET="o" * 40))
    with pytest.raises(Exception, match="invalid user token"):
        other.tokens.verify(token)
    await close_services(other)


def test_token_lifetime_follows_the_server_settings_and_is_capped_at_the_maximum(
    tmp_path: Path,
) -> None:
    config = tmp_path / "notifier.toml"
    config.write_text("[server]\ntoken_ttl = 900\nmax_token_ttl = 3600\n")
    tokens = make_services(MemoryStorage(), server_settings()).tokens

    default = run(["token", "ana", "--config", str(config)], SERVER_ENV)
    assert default.returncode == 0, default.stderr
    assert abs(tokens.verify(default.stdout.strip()).expires - (time.time() + 900)) <= 5
    assert "capped" not in default.stderr

    capped = run(["token", "ana", "--ttl", "86400", "--config", str(config)], SERVER_ENV)
    assert capped.returncode == 0, capped.stderr
    assert abs(tokens.verify(capped.stdout.strip()).expires - (time.time() + 3600)) <= 5
    assert "capped at max_token_ttl (3600 s)" in capped.stderr

    from_env = run(
        ["token", "ana", "--ttl", "86400"], {**SERVER_ENV, "NOTIFIER_MAX_TOKEN_TTL": "60"}
    )
    assert abs(tokens.verify(from_env.stdout.strip()).expires - (time.time() + 60)) <= 5


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["token", "bo"], {"NOTIFIER_API_KEYS": API_KEY}, "NOTIFIER_SECRET must be set"),
        (["token", "bo"], {**SERVER_ENV, "NOTIFIER_SECRET": "short"}, "NOTIFIER_SECRET"),
        (["token", "b o"], SERVER_ENV, "user: must be"),
        (["token", "bo", "--feeds", "notification,nope"], SERVER_ENV, "no feed group nope"),
    ],
)
def test_token_refuses_with_one_line_and_status_2(
    args: list[str], env: dict[str, str], says: str
) -> None:
    result = run(args, env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # no traceback


# -- notifier demo -----------------------------------------------------------------------------
@pytest.fixture
def demo() -> Iterator[tuple[str, list[str]]]:
    """``notifier demo``: the page's URL and the 4 lines it prints once it listens."""
    with running_demo(lines=4) as running:
        yield running


async def test_demo_prints_its_api_key_and_a_curl_line_that_notifies_a_bell_live(
    demo: tuple[str, list[str]],
) -> None:
    url, lines = demo
    [key_line] = [line for line in lines if "API key" in line]
    api_key = key_line.split("API key ")[1].split()[0]
    [curl] = [shlex.split(line) for line in lines if line.strip().startswith("curl ")]
    body = json.loads(curl[curl.index("--json") + 1])
    [feed] = body["to"]
    user = feed.removeprefix("notification:")
    assert user in SHOWN  # a bell the demo page shows

    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        token = (await http.post(f"/demo/token/{user}")).json()["token"]
        ws_url = url.replace("http://", "ws://").rstrip("/") + "/v1/realtime"
        async with websockets.connect(ws_url, open_timeout=10) as ws:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            assert json.loads(await ws.recv())["type"] == "welcome"
            await ws.send(json.dumps({"type": "subscribe", "feed": "notification", "limit": 5}))
            synced = json.loads(await ws.recv())
            assert synced["type"] == "sync"

            created = await run_curl(curl)
            assert created["actor"] == body["actor"]

            async def frame_with_it() -> dict[str, Any]:
                while True:
                    frame: dict[str, Any] = json.loads(await ws.recv())
                    groups = frame.get("groups") or []
                    if any(a["id"] == created["id"] for g in groups for a in g["activities"]):
                        return frame

            live = await asyncio.wait_for(frame_with_it(), 15)
            assert live["type"] == "update"
            assert live["counts"]["unseen"] == synced["counts"]["unseen"] + 1

        # And it is in the feed an HTTP read returns, at the top, with the printed API key.
        read = await http.get(
            f"/v1/feeds/notification/{user}", headers={"Authorization": f"Bearer {api_key}"}
        )
        assert read.status_code == 200
        top = read.json()["groups"][0]
        assert [a["id"] for a in top["activities"]] == [created["id"]]


async def run_curl(argv: list[str]) -> dict[str, Any]:
    """Run the printed curl line (or, without curl, the same request with httpx)."""
    if shutil.which(argv[0]):
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err
        answer: dict[str, Any] = json.loads(out)
        return answer
    body = argv[argv.index("--json") + 1]
    name, _, value = argv[argv.index("-H") + 1].partition(": ")
    headers = {name: value, "Content-Type": "application/json", "Accept": "application/json"}
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(argv[-1], content=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


# -- notifier deadletters ----------------------------------------------------------------------
@pytest.fixture
def storage_redis() -> Iterator[RedisServer]:
    """A Redis of its own for the feeds (append-only file: a restart keeps them), which a
    test can stop to make every fanout write fail, as an outage would."""
    with restartable_redis() as server:
        yield server


async def test_deadletters_list_requeue_and_discard_on_a_redis_broker(
    redis_url: str, storage_redis: RedisServer
) -> None:
    # Feeds on their own Redis, jobs on the session's: the feeds' Redis can go down alone.
    prefix = f"dl{uuid.uuid4().hex[:10]}"
    config, path = make_config(storage_redis.url, prefix, broker_url=redis_url, max_retries=2)
    pool = WorkerPool(path, threads=2)
    pool.start(1)
    # The worker reads the feeds' Redis as it boots: only then may that Redis go down.
    await wait_until(lambda: _true("fanout worker ready" in pool.output()), within=60)
    manager = open_manager(config)
    actors = manager.dispatcher
    assert isinstance(actors, FanoutActors)
    broker = actors.broker
    assert isinstance(broker, RedisBroker)
    dead_set = f"{config.fanout.namespace}:{config.fanout.high_queue}.XQ"
    try:
        post = Notifier(config, manager.storage).activity(actor="ana", verb="post", object="p:1")
        await manager.storage.put_activities([post])
        entries = {g.name: entries_for(g, [post]) for g in manager.fanout_groups}
        chunks = [[f"u{c}-{i}" for i in range(5)] for c in range(3)]
        jobs = [
            ChunkJob(op="add", actor="ana", activity_ids=[post.id], users=users, entries=entries)
            for users in chunks
        ]

        storage_redis.stop()  # every write of the chunks fails, every retry too
        await actors.send([(Priority.HIGH, job) for job in jobs])

        async def all_dead() -> bool:
            return len(await asyncio.to_thread(deadletters.find, actors)) == 3

        await wait_until(all_dead, within=60)

        listed = run(["deadletters", "list", "--config", str(path)])
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.strip().splitlines()
        assert len(lines) == 3
        assert "3 dead-lettered job(s)" in listed.stderr
        for line in lines:
            assert f"queue={config.fanout.high_queue}" in line
            assert "job=notifier.chunk.high" in line
            assert re.search(r"age=\d+s", line)
            assert f"  actor=ana  activities={post.id}  users=5  " in line
            assert "retries=2" in line
            assert re.search(r"reason=\S*ConnectionError: ", line), line
        ids = [line.split()[0] for line in lines]
        by_users = {tuple(_job(letter)["users"]): letter.id for letter in deadletters.find(actors)}
        assert set(by_users.values()) == set(ids)

        storage_redis.start()  # the outage is over; the operator sends one chunk back
        back, gone, last = (by_users[tuple(users)] for users in chunks)
        requeued = run(["deadletters", "requeue", "--id", back, "--config", str(path)])
        assert requeued.returncode == 0, requeued.stderr
        assert "requeued 1 job(s)" in requeued.stdout

        timeline = config.feeds["timeline"]

        async def chunk_written() -> bool:
            feeds = [await manager.storage.read_flat(timeline, u, limit=5) for u in chunks[0]]
            return all(feed == [post.id] for feed in feeds)

        await wait_until(chunk_written, within=60)
        assert broker.client.zcard(dead_set) == 2
        assert {letter.id for letter in deadletters.find(actors)} == {gone, last}

        discarded = run(["deadletters", "discard", "--id", gone, "--config", str(path)])
        assert discarded.returncode == 0, discarded.stderr
        assert "discarded 1 job(s)" in discarded.stdout
        assert broker.client.zcard(dead_set) == 1
        assert broker.client.hlen(f"{dead_set}.msgs") == 1
        [left] = run(["deadletters", "list", "--config", str(path)]).stdout.strip().splitlines()
        assert left.split()[0] == last
        for user in chunks[1] + chunks[2]:  # neither ran
            assert await manager.storage.read_flat(timeline, user, limit=5) == []

        unknown = run(["deadletters", "requeue", "--id", "nope", "--config", str(path)])
        assert unknown.returncode == 1
        assert "not found: nope" in unknown.stderr
        neither = run(["deadletters", "discard", "--config", str(path)])
        assert neither.returncode == 2
        assert broker.client.zcard(dead_set) == 1  # refusals change nothing
    finally:
        await manager.close()
        pool.stop()


def test_deadletters_needs_a_broker_it_can_reach() -> None:
    result = run(["deadletters", "list"], {"NOTIFIER_STORAGE_URL": "memory://"})
    assert result.returncode == 2
    assert "live inside the serving process" in result.stderr


async def test_requeued_dead_letters_get_fresh_retries_and_discarded_ones_are_gone() -> None:
    """The in-process broker (memory storage): what an admin page in the web process uses."""
    config, _ = make_config("memory://", "mem", max_retries=2, min_backoff_ms=10, chunk_size=10)
    storage = PoisonedStorage(poison="f0005")
    manager = open_manager(config, storage=storage, threads=2)
    actors = manager.dispatcher
    assert isinstance(actors, FanoutActors)
    try:
        for user in (f"f{i:04d}" for i in range(20)):
            await manager.follow(user, "ana", backfill=0)
        post = Notifier(config, storage).activity(actor="ana", verb="post", object="post:1")
        await manager.add_activity(post)

        async def dead(count: int) -> bool:
            return len(deadletters.find(actors)) == count

        await wait_until(lambda: dead(1), within=30)
        [letter] = deadletters.find(actors)
        assert letter.reason == "ConnectionError: storage went away mid-chunk"
        assert letter.retries == 2
        assert letter.dead_at is not None and abs(letter.dead_at - time.time()) < 30
        assert letter.activity_ids == (post.id,)
        assert letter.users == 10
        assert "age=" in letter.line() and "users=10" in letter.line()

        # Still poisoned: requeued, it runs its full three attempts again before it dies.
        assert storage.attempts == 3
        assert [sent.id for sent in deadletters.requeue(actors, [letter.id])] == [letter.id]
        await wait_until(lambda: _true(storage.attempts == 6), within=30)
        await wait_until(lambda: dead(1), within=30)
        assert deadletters.find(actors)[0].retries == 2

        assert deadletters.discard(actors, ["someone-else"]) == []
        assert [gone.id for gone in deadletters.discard(actors)] == [letter.id]
        assert deadletters.find(actors) == []
        assert actors.broker.dead_letters == []  # type: ignore[attr-defined]
    finally:
        await manager.close()


class PoisonedStorage(MemoryStorage):
    """Memory storage whose feed writes fail for any batch of users holding ``poison``."""

    def __init__(self, poison: str) -> None:
        super().__init__()
        self.poison = poison
        self.attempts = 0

    async def add_to_feeds(
        self, group: FeedGroup, users: Sequence[str], entries: Sequence[Entry]
    ) -> list[FeedChange]:
        if self.poison in users:
            self.attempts += 1  # a chunk stops at its first failed write: one per run
            raise ConnectionError("storage went away mid-chunk")
        return await super().add_to_feeds(group, users, entries)


def _job(letter: deadletters.DeadLetter) -> dict[str, Any]:
    assert letter.message is not None
    job: dict[str, Any] = letter.message.args[0]
    return job


async def _true(value: bool) -> bool:
    return value
