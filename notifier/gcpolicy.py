"""Garbage collection in notifier's long-running processes (``notifier serve``, ``notifier
worker``): no full collection in the middle of the traffic.

CPython's collector is generational. Young objects are scanned often and cheaply; once enough
objects have survived into the oldest generation, a *full* collection scans every object the
process holds, and the whole process (every thread: it holds the GIL) stands still meanwhile.
A web process with 1,000 websocket connections holds ~130,000 objects, ~57,000 of them from
start-up (modules, classes, functions, the app); a full collection took 60-120 ms there on a
2-vCPU machine, and every frame of the fanout in flight left that much later. With CPython's
default thresholds (700, 10, 10) the objects a fanout allocates in passing (events, frames,
tasks: tens of thousands at 1,000 clients) meet a young collection every 700 allocations, the
ones still in flight are promoted, and a full collection followed every 20-35 fanouts, landing
inside a round of ``notifier bench push`` in some runs and not in others (docs/performance.md).

``settle_heap``, called once the process is set up, does two things:

- it freezes what is alive then (``gc.freeze``): the start-up heap is never scanned again
  (about half of what a full collection scanned in the web process, almost all of it in a
  worker), at the cost of never freeing a start-up object that later becomes cyclic garbage;
- it collects the young generation every ``young`` allocations instead of 700: a fanout's
  short-lived objects are freed by their reference counts before a collection sees them, so
  they are no longer promoted, and full collections become rare (none in 40 rounds of the push
  benchmark at 1,000 clients, against 1-2 before). Cyclic garbage waits a little longer for its
  collection: at most ``young`` objects more.
"""

from __future__ import annotations

import gc

#: Allocations between two collections of the young generation (CPython's default: 700).
YOUNG = 20_000
#: Young collections between two collections of the middle generation (default: 10).
MIDDLE = 20


def settle_heap(young: int = YOUNG, middle: int = MIDDLE) -> None:
    """Collect once, freeze every object alive now, and collect the young generation every
    ``young`` allocations (the middle one every ``middle`` young collections). Call it once a
    long-running process has imported and built what it keeps, before it takes traffic."""
    gc.collect()
    gc.freeze()
    oldest = gc.get_threshold()[2]
    gc.set_threshold(young, middle, oldest)
