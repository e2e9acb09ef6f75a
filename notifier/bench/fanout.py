"""Fanout benchmark: follower-feed writes per second through the whole path, next to raw Redis.

notifier: a burst of activities POSTed at once (concurrent requests, one activity each, as an
application's many processes would send them) to ``notifier serve``, fanned out by ``notifier
worker`` processes into every follower's feed (flat timelines, or aggregated notification
feeds), timed from the first POST until the workers have announced the last follower-feed
write on the realtime bus (they publish right after each write, so the moment is exact, not a
broker poll). A burst writes at least 50,000 feeds (10 activities to 10,000 followers, 50 to
1,000), so that a repetition is long enough to measure a rate. Baselines, on the same Redis in
the same run, writing the same feeds the same number of times from this one process: ZADD +
trim per feed sent with client pipelining, and the same in a server-side Lua script over
batches of keys.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import redis
import redis.asyncio as aioredis

from notifier.bench.breakdown import Breakdown
from notifier.bench.breakdown import measure as measure_breakdown
from notifier.bench.procs import StackRunner
from notifier.fanout.actors import FanoutActors
from notifier.fanout.broker import make_broker
from notifier.fanout.settings import FanoutSettings
from notifier.realtime.bus import decode_event
from notifier.realtime.redis_bus import SharedEvent, channel_prefix, fanout_channel
from notifier.storage.redis import RedisStorage

#: Feed groups of the notification scenario: followers' notification feeds receive fanout.
NOTIFICATION_FEEDS = """
[feeds.user]
kind = "flat"
max_length = 1000

[feeds.inbox]
kind = "notification"
max_length = 100
fanout = true
"""

_LUA = """
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 0, ARGV[1])
  redis.call('ZREMRANGEBYRANK', key, 0, -tonumber(ARGV[2]) - 1)
end
return #KEYS
"""

#: The least Redis work an aggregated write can be: the raw baseline of notification fanout,
#: written for speed, not as notifier's code (no idempotency, no actor tally, no group record
#: beyond its state and key, scores as the group order). Per feed: ``o`` the groups (score: a
#: sequence, so a merge moves a group with one ZADD), ``e`` every group's ids (gid..id), ``h``
#: the newest group of each key ('k'..key), each group's state..key, the counts and the
#: sequence. Finds the newest group with the key among the merge window, adds the id (merged:
#: the group unseen and unread again), keeps exact unseen / unread counts, trims the oldest
#: group of a full feed. ARGV: window, max_length, id, key.
_AGGREGATED_LUA = """
local window, max_length, id, key = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
for _, feed in ipairs(KEYS) do
  local o, e, h = feed .. 'o', feed .. 'e', feed .. 'h'
  local got = redis.call('HMGET', h, 'k' .. key, 'u', 'r', 'q', 'n')
  local gid = got[1]
  local u, r = tonumber(got[2]) or 0, tonumber(got[3]) or 0
  local seq, n = (tonumber(got[4]) or 0) + 1, tonumber(got[5]) or 0
  local rank = gid and redis.call('ZREVRANK', o, gid)
  if rank and rank < window then
    local state = redis.call('HGET', h, gid)
    if string.sub(state, 1, 1) == '1' then u = u + 1 end
    if string.sub(state, 2, 2) == '1' then r = r + 1 end
    redis.call('ZADD', o, seq, gid)
    redis.call('HSET', h, gid, '00' .. key, 'u', u, 'r', r, 'q', seq)
  else
    gid = id
    redis.call('ZADD', o, seq, gid)
    n = n + 1
    if n > max_length then
      local old = redis.call('ZPOPMIN', o)[1]
      local state = redis.call('HGET', h, old)
      local old_key = 'k' .. string.sub(state, 3)
      if string.sub(state, 1, 1) == '0' then u = u - 1 end
      if string.sub(state, 2, 2) == '0' then r = r - 1 end
      if redis.call('HGET', h, old_key) == old then
        redis.call('HDEL', h, old, old_key)
      else
        redis.call('HDEL', h, old)
      end
      redis.call('ZREMRANGEBYLEX', e, '(' .. old, '(' .. old .. '~')
      n = n - 1
    end
    redis.call('HSET', h, 'k' .. key, gid, gid, '00' .. key, 'u', u + 1, 'r', r + 1,
               'q', seq, 'n', n)
  end
  redis.call('ZADD', e, 0, gid .. id)
end
return #KEYS
"""

Progress = Callable[[str], None]


@dataclass
class FanoutResult:
    """Medians over repetitions, feed-writes per second."""

    feeds: str
    """``flat`` or ``notification``."""
    followers: int
    workers: int
    burst: int
    """Activities per repetition (each one fanned out to every follower)."""
    notifier: float
    pipelined: float
    lua: float
    runs: list[float] = field(default_factory=list)
    aggregated: float | None = None
    """Notification feeds: the minimal aggregated Lua script over the same feeds (median)."""
    breakdown: Breakdown | None = None
    """With ``breakdown=True``: CPU per activity, per process and step (bench/breakdown.py)."""

    @property
    def best_baseline(self) -> float:
        return max(self.pipelined, self.lua)


def raw_pipelined(
    url: str, feeds: int, times: int = 1, batch: int = 300, max_length: int = 1000
) -> float:
    """Feed-writes/s: ZADD + ZREMRANGEBYRANK per feed, ``batch`` feeds per pipeline; every
    feed written ``times`` times (a new member each time)."""
    client = redis.Redis.from_url(url)
    prefix = f"raw{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    for _ in range(times):
        member = f"{time.time_ns():026x}"
        for start in range(0, feeds, batch):
            pipe = client.pipeline(transaction=False)
            for n in range(start, min(start + batch, feeds)):
                pipe.zadd(f"{prefix}:{n}", {member: 0})
                pipe.zremrangebyrank(f"{prefix}:{n}", 0, -max_length - 1)
            pipe.execute()
    elapsed = time.perf_counter() - started
    _drop(client, prefix)
    client.close()
    return feeds * times / elapsed


def raw_lua(
    url: str, feeds: int, times: int = 1, batch: int = 500, max_length: int = 1000
) -> float:
    """Feed-writes/s: the same writes in one server-side script per ``batch`` keys."""
    client = redis.Redis.from_url(url)
    script = client.register_script(_LUA)
    prefix = f"lua{uuid.uuid4().hex[:8]}"
    script(keys=[f"{prefix}:warm"], args=["0", max_length])
    started = time.perf_counter()
    for _ in range(times):
        member = f"{time.time_ns():026x}"
        for start in range(0, feeds, batch):
            keys = [f"{prefix}:{n}" for n in range(start, min(start + batch, feeds))]
            script(keys=keys, args=[member, max_length])
    elapsed = time.perf_counter() - started
    _drop(client, prefix)
    client.close()
    return feeds * times / elapsed


def raw_aggregated(
    url: str,
    feeds: int,
    times: int = 1,
    batch: int = 100,
    max_length: int = 100,
    window: int = 20,
    prefix: str | None = None,
) -> float:
    """Feed-writes/s of the minimal aggregated script (``_AGGREGATED_LUA``) over ``feeds``
    feeds, ``batch`` a call, each written ``times`` times with a new group key, as the
    bench's activities each open a group. ``prefix``: the run's feeds, kept between calls so
    that they fill (and trim) as notifier's do; dropped by ``drop_raw``."""
    client = redis.Redis.from_url(url)
    script = client.register_script(_AGGREGATED_LUA)
    prefix = prefix or f"agg{uuid.uuid4().hex[:8]}"
    script(keys=[f"{prefix}:warm:"], args=[window, max_length, "0" * 26, "warm"])
    started = time.perf_counter()
    for _ in range(times):
        member = f"{time.time_ns():026x}"
        for start in range(0, feeds, batch):
            keys = [f"{prefix}:{n}:" for n in range(start, min(start + batch, feeds))]
            script(keys=keys, args=[window, max_length, member, f"t{member}"])
    elapsed = time.perf_counter() - started
    client.close()
    return feeds * times / elapsed


def drop_raw(url: str, prefix: str) -> None:
    """Delete the keys a baseline left under ``prefix``."""
    client = redis.Redis.from_url(url)
    _drop(client, prefix)
    client.close()


def _drop(client: redis.Redis, prefix: str) -> None:
    batch = [key for key in client.scan_iter(f"{prefix}:*", count=1000)]
    for start in range(0, len(batch), 1000):
        client.delete(*batch[start : start + 1000])


class WriteWatch:
    """Counts follower-feed writes of one feed group as the workers announce them.

    Workers publish an event right after each write (one shared message per fanout chunk),
    so the count reaching the expected total is the moment the last write landed.
    """

    def __init__(self, url: str, key_prefix: str, feed: str) -> None:
        self._client = aioredis.Redis.from_url(url)
        self._pubsub = self._client.pubsub()
        self._fanout = fanout_channel(key_prefix).encode()
        self._pattern = f"{key_prefix}:rt:*"
        self._user_channels = channel_prefix(key_prefix).encode()
        self._feed = feed
        self.count = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> WriteWatch:
        await self._pubsub.psubscribe(self._pattern)
        self._task = asyncio.create_task(self._listen())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self._client.aclose()

    async def _listen(self) -> None:
        async for message in self._pubsub.listen():
            if message["type"] != "pmessage":
                continue
            if message["channel"] == self._fanout:
                shared = msgspec.json.decode(message["data"], type=SharedEvent)
                event = decode_event(shared.event)
                users = len(shared.users)
            elif message["channel"].startswith(self._user_channels):
                event, users = decode_event(message["data"]), 1
            else:
                continue
            if event.feed == self._feed and event.kind == "added":
                self.count += users
                self._changed.set()

    async def reach(self, total: int, seconds: float) -> None:
        """Return once ``total`` writes were announced; TimeoutError after ``seconds``."""
        async with asyncio.timeout(seconds):
            while self.count < total:
                self._changed.clear()
                await self._changed.wait()


class Burst:
    """Activities of one actor POSTed all at once (as an application's many processes would
    post them), timed until the workers have announced every follower-feed write."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        headers: dict[str, str],
        watch: WriteWatch,
        actors: FanoutActors,
        followers: int,
        activity: Callable[[int], dict[str, Any]],
        seconds: float = 600,
    ) -> None:
        self._http, self._headers, self._watch, self._actors = http, headers, watch, actors
        self._followers, self._activity, self._seconds = followers, activity, seconds
        self._posted = 0

    async def __call__(self, activities: int) -> float:
        """Seconds from the first POST of ``activities`` to their last feed-write."""
        target = self._watch.count + activities * self._followers
        started = time.perf_counter()
        first, self._posted = self._posted, self._posted + activities
        await asyncio.gather(*(self._post(first + n) for n in range(activities)))
        await self._watch.reach(target, self._seconds)
        elapsed = time.perf_counter() - started
        await self._actors.join(600)  # nothing left over for the next measurement
        return elapsed

    async def _post(self, n: int) -> None:
        response = await self._http.post(
            "/v1/activities", json=self._activity(n), headers=self._headers
        )
        response.raise_for_status()


async def run(
    *,
    followers: int = 10_000,
    feeds: str = "flat",
    workers: int = 2,
    repeats: int = 3,
    burst: int | None = None,
    progress: Progress | None = None,
    breakdown: bool = False,
) -> FanoutResult:
    """``repeats`` bursts of ``burst`` activities (default: enough for 50,000 feed-writes,
    at least 10) fanned out to ``followers``, each followed by both baselines writing as many
    feeds as often. ``breakdown``: then one more burst (4 times as long), measured per
    process and step (notifier/bench/breakdown.py)."""
    say = progress or (lambda _: None)
    cpu: Breakdown | None = None
    burst = burst or min(100, max(10, 50_000 // max(followers, 1)))
    toml = NOTIFICATION_FEEDS if feeds == "notification" else ""
    group = "inbox" if feeds == "notification" else "timeline"
    async with StackRunner(workers=workers, toml=toml) as stack:
        storage = RedisStorage.from_url(stack.redis_url, prefix="bench")
        actors = FanoutActors(make_broker(FanoutSettings(), stack.redis_url), FanoutSettings())
        try:
            say(f"fanout/{feeds}: {followers:,} followers, bursts of {burst} activities")
            users = [f"u{i:07d}" for i in range(followers)]
            for start in range(0, followers, 50):
                await asyncio.gather(
                    *(storage.follow(u, ["star"]) for u in users[start : start + 50])
                )
            async with (
                httpx.AsyncClient(base_url=stack.http_url, timeout=120) as http,
                WriteWatch(stack.redis_url, "bench", group) as watch,
            ):
                burst_of = Burst(http, stack.headers, watch, actors, followers,
                                 lambda n: {"actor": "star", "verb": "post", "object": f"p{n}",
                                            "target": f"t{n}"})  # fmt: skip

                async def fan_out(activities: int) -> float:
                    return activities * followers / await burst_of(activities)

                await fan_out(1)  # warm-up: workers connected, scripts loaded
                mine: list[float] = []
                piped: list[float] = []
                lua: list[float] = []
                agg: list[float] = []
                # The aggregated baseline's feeds live through the run and fill as the
                # followers' notification feeds do (the same warm-up write, then each burst).
                agg_feeds = f"agg{uuid.uuid4().hex[:8]}"
                if feeds == "notification":
                    await asyncio.to_thread(raw_aggregated, stack.redis_url, followers, 1,
                                            prefix=agg_feeds)  # fmt: skip
                for n in range(repeats):
                    mine.append(await fan_out(burst))
                    piped.append(
                        await asyncio.to_thread(raw_pipelined, stack.redis_url, followers, burst)
                    )
                    lua.append(await asyncio.to_thread(raw_lua, stack.redis_url, followers, burst))
                    line = (f"fanout/{feeds} {n + 1}/{repeats}: notifier {mine[-1]:,.0f}/s, "
                            f"pipelined {piped[-1]:,.0f}/s, lua {lua[-1]:,.0f}/s")  # fmt: skip
                    if feeds == "notification":
                        agg.append(await asyncio.to_thread(
                            raw_aggregated, stack.redis_url, followers, burst, prefix=agg_feeds
                        ))  # fmt: skip
                        line += f", aggregated lua {agg[-1]:,.0f}/s"
                    say(line)
                await asyncio.to_thread(drop_raw, stack.redis_url, agg_feeds)
                if breakdown:  # after the measured bursts: sampling never slows them
                    say(f"fanout/{feeds}: CPU breakdown over {burst * 4} activities")
                    cpu = await measure_breakdown(stack, burst_of, burst * 4, followers)
        finally:
            actors.broker.close()
            await storage.close()
    return FanoutResult(
        feeds=feeds,
        followers=followers,
        workers=workers,
        burst=burst,
        notifier=statistics.median(mine),
        pipelined=statistics.median(piped),
        lua=statistics.median(lua),
        runs=mine,
        aggregated=statistics.median(agg) if agg else None,
        breakdown=cpu,
    )


def table(results: list[FanoutResult]) -> str:
    """One row per run configuration: medians over repetitions, and the ratios."""
    rows = [
        f"{'fanout':<22} {'burst':>5} {'notifier/s':>11} {'runs (min-max)':>17} "
        f"{'pipelined/s':>12} {'lua/s':>10} {'agg lua/s':>10} {'vs pipelined':>13} "
        f"{'vs lua':>7} {'vs agg':>7}"
    ]
    for r in results:
        spread = f"{min(r.runs):,.0f}-{max(r.runs):,.0f}" if r.runs else "-"
        agg, vs_agg = "-", "-"
        if r.aggregated:
            agg, vs_agg = f"{r.aggregated:,.0f}", f"{r.notifier / r.aggregated:.2f}"
        rows.append(
            f"{r.feeds + ' ' + format(r.followers, ','):<22} {r.burst:>5} {r.notifier:>11,.0f} "
            f"{spread:>17} {r.pipelined:>12,.0f} {r.lua:>10,.0f} {agg:>10} "
            f"{r.notifier / r.pipelined:>13.2f} {r.notifier / r.lua:>7.2f} {vs_agg:>7}"
        )
    rows.append(
        f"follower-feed writes per second, {results[0].workers} worker processes; a burst is "
        f"that many activities POSTed at once; medians of {len(results[0].runs)} repetitions "
        "alternating with the raw baselines (agg lua: the minimal aggregated "
        "script, notification feeds only)"
        if results
        else "no fanout runs"
    )
    return "\n".join(rows)
