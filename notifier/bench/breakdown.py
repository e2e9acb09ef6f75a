"""Where one activity's CPU goes: per process and per step, across the whole fanout path.

Around one burst of the fanout benchmark this module takes, for every process of the stack,
the CPU it used (``/proc`` for ``notifier serve`` and each ``notifier worker``, ``INFO cpu``
for Redis) and divides by the activities posted. Inside the Python processes it samples
stacks with py-spy (when installed: ``pip install py-spy``, the ``bench`` extra) and sorts
each sample into a named step (the POST's validation, the activity's storage, the enqueue;
the broker's fetch and ack; the fanout job's follower reads, policy and chunk enqueue; the
chunk's feed writes and publish); a step's share of a process's samples times that process's
measured CPU is its cost. Inside Redis, every command of the burst is timed by the slow log
(threshold 0, for the burst only) and grouped by command, scripts by name. Only samples that
hold the GIL are counted, so a thread waiting on a socket or a lock costs nothing here, as it
costs no CPU.

The figures are per activity, so that the fixed cost of an activity (HTTP, broker hops, the
fanout job) and what grows with followers (the writes) can be read side by side.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import redis.asyncio as aioredis

from notifier.bench.procs import Stack, cpu_seconds

#: Samples per second py-spy takes of each process.
SAMPLE_RATE = 400
#: Slow-log entries kept during a measured burst (each command of the burst is one).
_SLOWLOG_LENGTH = 1_000_000


@dataclass(frozen=True)
class Rule:
    """A step: a sample belongs to it when every marker is in one of its frames (the first
    rule that matches wins, so nested steps come before the steps around them)."""

    step: str
    markers: tuple[str, ...]

    def matches(self, frames: Sequence[str]) -> bool:
        return all(any(marker in frame for frame in frames) for marker in self.markers)


def _rules(*pairs: tuple[str, str | tuple[str, ...]]) -> tuple[Rule, ...]:
    return tuple(Rule(step, (m,) if isinstance(m, str) else m) for step, m in pairs)


#: Steps of ``notifier serve`` handling ``POST /v1/activities``.
WEB_STEPS = _rules(
    ("enqueue the fanout job", "enqueue_async ("),
    ("actor feed: realtime publish", ("_add_direct (", "publish_changes (")),
    ("actor feed: write", "_add_direct ("),
    ("store the activity", "put_activities ("),
    ("look up the activity (409 check)", ("store (", "get_activities (")),
    ("rate limit and auth", ("check_and_hit (",)),
    ("validate and build the activity", "build ("),
    ("respond (encode, metrics)", "json_response ("),
    ("rest of the handler", "add_activity ("),
    ("HTTP: uvicorn, middleware, routing", "run_asgi ("),
    ("HTTP: uvicorn, middleware, routing", "httptools_impl.py"),
    ("event loop and other", ""),
)

#: Steps of ``notifier worker`` running fanout and chunk jobs.
WORKER_STEPS = _rules(
    ("chunk: realtime publish", ("run_chunk (", "publish_changes (")),
    ("chunk: feed writes", ("run_chunk (", "add_to_feeds (")),
    ("chunk: activity check", ("run_chunk (", "get_activities (")),
    ("chunk: rest", "run_chunk ("),
    ("fanout job: enqueue chunk jobs", ("run_fanout (", "send (")),
    ("fanout job: priority policy", ("run_fanout (", "split (")),
    ("fanout job: follower count", ("run_fanout (", "follower_count (")),
    ("fanout job: follower pages", ("run_fanout (", "followers (")),
    ("fanout job: activity check", ("run_fanout (", "_prepare (")),
    ("fanout job: rest", "run_fanout ("),
    # The fanout job's first reads run as tasks of their own (gathered): no run_fanout frame.
    ("fanout job: follower pages", "StorageFollowers.followers ("),
    ("fanout job: activity check", "_prepare ("),
    ("job: decode and run (dramatiq, middleware)", "process_message ("),
    ("broker: ack", "post_process_message ("),
    ("broker: ack", ".ack ("),
    ("broker: fetch (consumers, doorbell, LOW gate)", "ConsumerThread.run ("),
    ("broker: sweeps and heartbeats", "Sweeper"),
    ("event loop and other", ""),
)


def classify(samples: Iterable[tuple[Sequence[str], int]], rules: Sequence[Rule]) -> Counter[str]:
    """Samples (frames root first, count) per step; a sample no rule matches is ``other``."""
    steps: Counter[str] = Counter()
    for frames, count in samples:
        step = next((rule.step for rule in rules if rule.matches(frames)), "other")
        steps[step] += count
    return steps


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    """py-spy's ``--format raw`` (collapsed stacks: ``frame;frame;… count`` per line)."""
    samples = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            samples.append((stack.split(";"), int(count)))
    return samples


@dataclass
class StepCost:
    """One step's CPU, µs per activity."""

    process: str
    step: str
    us: float


@dataclass
class Breakdown:
    """CPU per activity of one measured burst, per process and per step."""

    activities: int
    followers: int
    processes: dict[str, float]
    """``web``, ``workers``, ``redis``: µs of CPU per activity."""
    steps: list[StepCost] = field(default_factory=list)
    """Python steps (when py-spy sampled) and Redis commands, µs per activity."""
    sampled: bool = False
    """Whether the Python processes' steps come from samples (py-spy was found)."""

    @property
    def total(self) -> float:
        return sum(self.processes.values())


def py_spy() -> str | None:
    """The py-spy binary: beside this interpreter (a venv's bin/) or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class _Sampler:
    """py-spy recording one process until stopped (nothing when py-spy is missing)."""

    def __init__(self, binary: str | None, pid: int, folder: Path) -> None:
        self.out = folder / f"{pid}.txt"
        self.proc: subprocess.Popen[bytes] | None = None
        if binary is not None:
            self.proc = subprocess.Popen(
                [
                    binary,
                    "record",
                    "--gil",
                    "--rate",
                    str(SAMPLE_RATE),
                    "--format",
                    "raw",
                    "--output",
                    str(self.out),
                    "--pid",
                    str(pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def stop(self) -> list[tuple[list[str], int]]:
        if self.proc is None:
            return []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        return parse_collapsed(self.out.read_text()) if self.out.exists() else []


async def measure(
    stack: Stack,
    burst: Callable[[int], Awaitable[float]],
    activities: int,
    followers: int,
    *,
    sample: bool = True,
    keep: Path | None = None,
) -> Breakdown:
    """Run ``burst(activities)`` once (the fanout bench's burst: POSTs, then wait for every
    write) with every process of ``stack`` measured; CPU per activity. ``sample=False``
    leaves py-spy out (processes and Redis only); ``keep`` is a folder to keep py-spy's
    collapsed stacks in (``<pid>.txt``), for a flame graph."""
    client = aioredis.Redis.from_url(stack.redis_url, decode_responses=True)
    binary = py_spy() if sample else None
    folder = keep or Path(tempfile.mkdtemp(prefix="notifier-breakdown-"))
    pids = {"web": [stack.web.pid], "workers": [w.pid for w in stack.workers]}
    try:
        old_threshold = str(
            (await client.config_get("slowlog-log-slower-than"))["slowlog-log-slower-than"]
        )
        old_length = str((await client.config_get("slowlog-max-len"))["slowlog-max-len"])
        samplers = {name: [_Sampler(binary, pid, folder) for pid in group]
                    for name, group in pids.items()}  # fmt: skip
        if binary is not None:
            await asyncio.sleep(1.0)  # py-spy attaches
        await client.config_set("slowlog-max-len", _SLOWLOG_LENGTH)
        await client.slowlog_reset()
        await client.config_set("slowlog-log-slower-than", 0)
        cpu_before = {name: sum(cpu_seconds(p) for p in group) for name, group in pids.items()}
        redis_before = _redis_cpu(await client.info("cpu"))
        await burst(activities)
        redis_after = _redis_cpu(await client.info("cpu"))
        cpu_after = {name: sum(cpu_seconds(p) for p in group) for name, group in pids.items()}
        await client.config_set("slowlog-log-slower-than", old_threshold)
        log = await client.execute_command("SLOWLOG", "GET", "-1")  # type: ignore[no-untyped-call]
        await client.slowlog_reset()
        await client.config_set("slowlog-max-len", old_length)
        samples = {name: [s.stop() for s in group] for name, group in samplers.items()}
    finally:
        await client.aclose()
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    per = 1e6 / activities
    processes = {name: (cpu_after[name] - cpu_before[name]) * per for name in pids}
    processes["redis"] = (redis_after - redis_before) * per
    steps: list[StepCost] = []
    for name, rules in (("web", WEB_STEPS), ("workers", WORKER_STEPS)):
        counted: Counter[str] = Counter()
        for one in samples[name]:
            counted += classify(one, rules)
        total = sum(counted.values())
        steps += [StepCost(name, step, processes[name] * n / total)
                  for step, n in counted.most_common()]  # fmt: skip
    steps += _redis_steps(log, processes["redis"], per)
    return Breakdown(activities, followers, processes, steps, sampled=binary is not None)


def _redis_cpu(info: dict[str, object]) -> float:
    return float(str(info["used_cpu_user"])) + float(str(info["used_cpu_sys"]))


def script_names() -> dict[str, str]:
    """SHA1 → name of every Lua script the stack runs (storage, broker, bus, rate limits)."""
    from dramatiq.brokers import redis as dramatiq_redis

    from notifier.realtime import redis_bus
    from notifier.storage import redis as storage_redis
    from notifier.web import shared_limits

    texts: dict[str, str | bytes] = {
        f"dramatiq {name}": text for name, text in dramatiq_redis._scripts.items()
    }
    texts["realtime publish"] = redis_bus._PUBLISH_ALL
    texts["rate limit"] = shared_limits.BUCKET
    texts["rate limit + auth failures"] = shared_limits.CHECK_AND_HIT
    storage = storage_redis.RedisStorage.from_url("redis://127.0.0.1:1/0")
    for attr, script in vars(storage).items():
        if hasattr(script, "script") and hasattr(script, "sha"):
            texts[f"storage {attr.strip('_')}"] = script.script
    names = {}
    for name, text in texts.items():
        body = text.encode() if isinstance(text, str) else text
        names[hashlib.sha1(body).hexdigest()] = name  # Redis names scripts so
    return names


def _redis_steps(log: list[list[object]], cpu_us: float, per: float) -> list[StepCost]:
    """The slow log's commands, by command (scripts by name), µs per activity; what Redis
    spent outside commands (reading, parsing, replying, pub/sub delivery) is the rest."""
    names = script_names()
    timed: Counter[str] = Counter()
    for entry in log:
        duration, args = int(str(entry[2])), [str(a) for a in cast(list[object], entry[3])]
        if len(entry) > 4 and entry[4] == "?:0":
            continue  # called by a script: counted in the script's own time
        command = args[0].lower() if args else "?"
        if command in ("evalsha", "evalsha_ro") and len(args) > 1:
            command = names.get(args[1], f"script {args[1][:8]}")
        elif command in ("slowlog", "config", "info"):
            continue  # the measurement's own
        timed[command] += duration
    steps = [StepCost("redis", command, us * per / 1e6) for command, us in timed.most_common()]
    inside = sum(s.us for s in steps)
    if inside > cpu_us:
        # The slow log times a command by the wall clock: on a busy machine Redis is
        # sometimes descheduled in the middle of one. Shares then, not times.
        for step in steps:
            step.us *= cpu_us / inside
        inside = cpu_us
    steps.append(StepCost("redis", "outside commands (I/O, parsing, pub/sub)", cpu_us - inside))
    return steps


def table(b: Breakdown) -> str:
    """The breakdown as text: processes, then each process's steps, µs per activity."""
    rows = [
        f"where one activity's CPU goes: {b.followers:,} followers, {b.activities} activities "
        "(µs of CPU per activity)",
        f"{'process':<8} {'step':<48} {'µs':>8} {'share':>6}",
    ]
    for name, us in b.processes.items():
        rows.append(f"{name:<8} {'(all)':<48} {us:>8,.0f} {us / b.total:>6.0%}")
        for step in (s for s in b.steps if s.process == name):
            if step.us >= 0.5:
                rows.append(f"{'':<8} {step.step:<48} {step.us:>8,.0f} {step.us / b.total:>6.0%}")
    rows.append(f"{'total':<8} {'':<48} {b.total:>8,.0f}")
    if not b.sampled:
        rows.append("(py-spy not found: Python processes without steps; pip install py-spy)")
    return "\n".join(rows)
