"""What notifier needs from Redis (no eviction, persistence) is checked: by the check itself
on real redis-servers configured each way, by ``notifier check``, and at a process's start."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier.checks import redis_findings
from notifier.storage.redis_client import redis_client
from tests.services import RedisServer, free_port, unavailable, wait_for_port
from tests.web.conftest import API_KEY, SECRET

ROOT = Path(__file__).resolve().parents[1]

UNSAFE = ["--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"]
SNAPSHOTS = ["--save", "60 1", "--maxmemory-policy", "noeviction"]


@pytest.fixture
def servers() -> Iterator[dict[str, RedisServer]]:
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
        return
    made = {
        "unsafe": RedisServer(binary, options=UNSAFE),
        "snapshots": RedisServer(binary, options=SNAPSHOTS),
        "safe": RedisServer(binary, persistent=True),
    }
    for server in made.values():
        server.start()
    yield made
    for server in made.values():
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


async def test_eviction_and_missing_persistence_are_errors(
    servers: dict[str, RedisServer],
) -> None:
    async def findings(name: str) -> list[tuple[str, str]]:
        client = redis_client(servers[name].url)
        try:
            return [(f.severity, f.message) for f in
                    await redis_findings(client, ["storage", "broker"])]  # fmt: skip
        finally:
            await client.aclose()

    unsafe = await findings("unsafe")
    assert [s for s, _ in unsafe] == ["error", "error"]
    assert "allkeys-lru" in unsafe[0][1] and "noeviction" in unsafe[0][1]
    assert "no persistence" in unsafe[1][1] and "feeds and queued fanout jobs" in unsafe[1][1]
    snapshots = await findings("snapshots")
    assert [s for s, _ in snapshots] == ["warning"] and "RDB snapshots only" in snapshots[0][1]
    assert await findings("safe") == []


def run_check(url: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    base.update(NOTIFIER_STORAGE_URL=url, NOTIFIER_SECRET=SECRET, NOTIFIER_API_KEYS=API_KEY)
    base.update(env)
    return subprocess.run(
        [sys.executable, "-m", "notifier.cli", "check"], cwd=ROOT, env=base,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_notifier_check_reports_in_plain_words(servers: dict[str, RedisServer]) -> None:
    bad = run_check(servers["unsafe"].url)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "ERROR   storage and broker: Redis evicts keys" in bad.stdout
    assert "2 error(s)" in bad.stdout
    good = run_check(servers["safe"].url)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "OK      storage:" in good.stdout and "0 error(s)" in good.stdout
    unreachable = run_check(f"redis://127.0.0.1:{free_port()}/0")
    assert unreachable.returncode == 1 and "storage" in unreachable.stdout
    no_secret = run_check(servers["safe"].url, NOTIFIER_SECRET="")
    assert no_secret.returncode == 1 and "NOTIFIER_SECRET" in no_secret.stdout


def test_serve_warns_at_start_about_a_redis_that_loses_data(
    servers: dict[str, RedisServer], tmp_path: Path
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(NOTIFIER_STORAGE_URL=servers["unsafe"].url, NOTIFIER_SECRET=SECRET,
               NOTIFIER_API_KEYS=API_KEY)  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "notifier.cli", "serve", "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for_port(port, 30, proc)
    finally:
        proc.terminate()
        proc.wait(15)
    text = log.read_text()
    assert "WARNING notifier.checks: backend check (error) storage and broker" in text, text
    assert "maxmemory-policy allkeys-lru" in text
