"""notifier's long-running processes run no full garbage collection in the middle of the traffic
(notifier/gcpolicy.py): a full collection scans every object the process holds, and in a web
process with 1,000 connections it held every frame of the push in flight back 60-120 ms.

Each test runs in a fresh interpreter: freezing the heap and changing the collector's thresholds
are process-wide, and must neither leak into the test session nor depend on what it allocated.
CPython's collector is deterministic for a given sequence of allocations, so the counts below are
too (on the CPython versions this project runs, 3.11 and later)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: A server-shaped heap (what start-up built, 1,000 connections' state), then pushes: one event
#: per connection queued and sent, a few objects kept per push (caches). Prints the number of
#: full collections during the pushes, and how many objects a full collection would scan.
_PUSHES = """
import gc, sys

class Obj:
    def __init__(self, *a):
        self.a = a

startup = [Obj(i) for i in range(50_000)]
connections = [[Obj(j) for j in range(80)] for _ in range(1_000)]
kept = []
if sys.argv[1] == "settled":
    from notifier.gcpolicy import settle_heap
    settle_heap()
full = []
gc.callbacks.append(
    lambda phase, info: full.append(1) if phase == "stop" and info["generation"] == 2 else None
)
for push in range(40):
    in_flight = [Obj(c) for c in connections]
    for connection, event in zip(connections, in_flight):
        connection.append(event)
    for connection in connections:
        connection.pop()
    del in_flight
    kept.append([Obj(push) for _ in range(200)])
print(len(full), len(gc.get_objects()))
"""


def _python(*args: str, env: dict[str, str] | None = None) -> str:
    """The last line a fresh interpreter prints (the environment's NOTIFIER_* variables
    replaced by ``env``)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**clean, **(env or {})},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_a_settled_heap_runs_no_full_collection_during_pushes() -> None:
    full, scanned = map(int, _python("-c", _PUSHES, "settled").split())
    assert full == 0
    assert scanned < 20_000  # of ~140,000: the start-up heap and the connections are frozen
    # The same pushes with CPython's defaults: full collections of the whole heap.
    full, scanned = map(int, _python("-c", _PUSHES, "default").split())
    assert full >= 1
    assert scanned > 130_000


def test_notifier_serve_settles_its_heap_before_taking_traffic() -> None:
    script = (
        "import gc, uvicorn\n"
        "uvicorn.run = lambda app, **options: print(gc.get_freeze_count(), *gc.get_threshold())\n"
        "from notifier.cli import main\n"
        "main(['serve', '--log-level', 'warning'], standalone_mode=False)\n"
    )
    env = {"NOTIFIER_SECRET": "s" * 32, "NOTIFIER_API_KEYS": "test-key-0123456789"}
    frozen, young, middle, _ = map(int, _python("-c", script, env=env).split())
    assert frozen > 10_000  # the imports and the app
    assert (young, middle) == (20_000, 20)


def test_notifier_worker_settles_its_heap_once_booted() -> None:
    script = (
        "import gc, threading\n"
        "from notifier.config import Config\n"
        "from notifier.fanout import runtime\n"
        "class Booted:\n"
        "    worker_threads = 1\n"
        "    def stop(self, timeout): pass\n"
        "runtime.start_worker = lambda actors, **options: Booted()\n"
        "stop = threading.Event()\n"
        "stop.set()\n"
        "runtime.run_worker(Config.load(), stop=stop)\n"
        "print(gc.get_freeze_count(), *gc.get_threshold())\n"
    )
    env = {"NOTIFIER_STORAGE_URL": "redis://127.0.0.1:9/0"}  # never reached: nothing runs
    frozen, young, middle, _ = map(int, _python("-c", script, env=env).split())
    assert frozen > 10_000
    assert (young, middle) == (20_000, 20)
