"""Who is active: what the fanout priority policy reads (recently active followers go HIGH).

The web layer is where users show up: a read of their own feeds, a websocket connection. It
records them in the shared presence, at most once a minute per user and process, so that a
busy page does not turn every read into an extra Redis write.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

log = logging.getLogger(__name__)

#: Seconds between two presence writes for the same user from one process.
TOUCH_EVERY_S = 60.0
#: Users remembered per process.
_REMEMBERED = 100_000


class ActiveUsers:
    """Throttled calls to the fanout manager's ``mark_active``."""

    def __init__(self, mark_active: Callable[[Sequence[str]], Awaitable[None]]) -> None:
        self._mark_active = mark_active
        self._last: OrderedDict[str, float] = OrderedDict()

    async def seen(self, user: str) -> None:
        """``user`` is here now; a failure to record it never fails the caller's request."""
        now = time.monotonic()
        last = self._last.get(user)
        if last is not None and now - last < TOUCH_EVERY_S:
            return
        self._last[user] = now
        self._last.move_to_end(user)
        if len(self._last) > _REMEMBERED:
            self._last.popitem(last=False)
        try:
            await self._mark_active([user])
        except Exception:  # presence is a hint for priorities, not data
            log.warning("could not record user %s as active", user, exc_info=True)
