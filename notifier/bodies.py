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

from notifier.model import Activity
from notifier.storage.base import Storage


class ActivityCache:
    """Activity bodies by id for one process (and one event loop): an LRU of decoded
    bodies; concurrent misses for the same ids share one storage read."""

    def __init__(self, storage: Storage, size: int = 10_000) -> None:
        self._storage = storage
        self._size = size
        self._bodies: OrderedDict[str, Activity] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Activity | None]] = {}

    async def get(self, ids: Sequence[str]) -> dict[str, Activity]:
        """Bodies of ``ids`` still stored (unknown ids are absent)."""
        found: dict[str, Activity] = {}
        waiting: dict[str, asyncio.Future[Activity | None]] = {}
        missing: list[str] = []
        for i in ids:
            if i in self._bodies:
                found[i] = self._bodies[i]
                self._bodies.move_to_end(i)
            elif i in self._inflight:
                waiting[i] = self._inflight[i]
            elif i not in found:
                missing.append(i)
        if missing:
            loop = asyncio.get_running_loop()
            mine = {i: loop.create_future() for i in missing}
            self._inflight.update(mine)
            try:
                bodies = await self._storage.get_activities(missing)
            except BaseException as exc:
                for i, fut in mine.items():
                    self._inflight.pop(i, None)
                    fut.set_exception(exc)
                    fut.exception()  # retrieved: other waiters re-raise it themselves
                raise
            for i, fut in mine.items():
                self._inflight.pop(i, None)
                body = bodies.get(i)
                fut.set_result(body)
                if body is not None:
                    found[i] = body
                    self._remember(i, body)
        for i, fut in waiting.items():
            body = await fut
            if body is not None:
                found[i] = body
        return found

    def _remember(self, activity_id: str, body: Activity) -> None:
        self._bodies[activity_id] = body
        if len(self._bodies) > self._size:
            self._bodies.popitem(last=False)

    def forget(self, ids: Sequence[str]) -> None:
        """Drop removed activities."""
        for i in ids:
            self._bodies.pop(i, None)
