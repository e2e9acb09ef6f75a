"""Activity bodies by id, cached in the process: bodies never change once stored.

Reads (feed pages over HTTP, websocket frames) decode the same popular activities again and
again; a fanout's frames name the same few ids for thousands of connections. The cache keeps
decoded bodies and lets concurrent misses share one storage read. It serves reads only:
writers and checks that must see a deletion (the fanout's removal race, idempotent re-sends)
ask storage directly. A body deleted elsewhere may linger here, but no feed names it anymore.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from notifier.model import Activity
from notifier.storage.base import Storage


def retrieved(task: asyncio.Task[Any]) -> None:
    """A done callback for a task whose callers may all have gone (cancelled) before it ended:
    its exception counts as seen (asyncio logs an unseen one as an error). Callers still
    waiting get it as usual."""
    if not task.cancelled():
        task.exception()


class ActivityCache:
    """Activity bodies by id for one process (and one event loop): an LRU of decoded
    bodies; concurrent misses for the same ids share one storage read."""

    def __init__(self, storage: Storage, size: int = 10_000) -> None:
        self._storage = storage
        self._size = size
        self._bodies: OrderedDict[str, Activity] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[dict[str, Activity]]] = {}
        """Reads under way, by each id they fetch."""

    def __len__(self) -> int:
        """Bodies held now (at most ``size``)."""
        return len(self._bodies)

    async def get(self, ids: Sequence[str]) -> dict[str, Activity]:
        """Bodies of ``ids`` still stored (unknown ids are absent).

        A miss is read in a task of its own, which later misses of the same ids join, each
        waiting shielded: a caller cancelled in the middle (a closed connection, a dropped
        request) leaves the read to finish for the others."""
        found: dict[str, Activity] = {}
        reads: dict[str, asyncio.Task[dict[str, Activity]]] = {}
        missing: list[str] = []
        for i in ids:
            if i in self._bodies:
                found[i] = self._bodies[i]
                self._bodies.move_to_end(i)
            elif i in self._inflight:
                reads[i] = self._inflight[i]
            else:
                missing.append(i)
        if missing:
            missing = list(dict.fromkeys(missing))  # an id asked for twice is read once
            read = asyncio.get_running_loop().create_task(self._read(missing))
            read.add_done_callback(retrieved)
            for i in missing:
                self._inflight[i] = reads[i] = read
        for read in {id(r): r for r in reads.values()}.values():
            await asyncio.shield(read)
        for i, read in reads.items():
            body = read.result().get(i)
            if body is not None:
                found[i] = body
        return found

    async def _read(self, ids: list[str]) -> dict[str, Activity]:
        me = asyncio.current_task()
        try:
            bodies = await self._storage.get_activities(ids)
        finally:
            for i in ids:
                if self._inflight.get(i) is me:
                    del self._inflight[i]
        for i, body in bodies.items():
            self._remember(i, body)
        return bodies

    def _remember(self, activity_id: str, body: Activity) -> None:
        self._bodies[activity_id] = body
        if len(self._bodies) > self._size:
            self._bodies.popitem(last=False)

    def forget(self, ids: Sequence[str]) -> None:
        """Drop removed activities."""
        for i in ids:
            self._bodies.pop(i, None)
