"""Many statements as one awaitable: the driver's ``execute_concurrent``, made asyncio-friendly.

A fanout chunk writes hundreds of feeds. Awaiting each statement on its own costs a coroutine,
a semaphore slot and a wake-up of the event loop from the driver's I/O thread per statement
(``call_soon_threadsafe`` writes to the loop's self-pipe every time): in the profile of a
worker that was as much CPU as the driver's own work. Here a window of ``in_flight`` requests
is kept going from the driver's callbacks (each completion starts the next statement, in the
I/O thread, as ``execute_concurrent`` does), and the loop is woken once, when the last
statement has answered or the first one has failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from typing import Any

_MAX_DEPTH = 50
"""Completions handled inline (a request that answered before its callbacks were attached
runs them in the caller's stack) before the next start is handed to the loop instead."""


class ConcurrentRun:
    """Runs ``statements`` on ``session`` with at most ``in_flight`` at once; ``future``
    gets every statement's rows (all pages), in order, or the first error."""

    def __init__(
        self,
        session: Any,
        statements: Sequence[Any],
        in_flight: int,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._session = session
        self._statements = statements
        self._in_flight = max(1, in_flight)
        self._loop = loop
        self.future: asyncio.Future[list[list[Any]]] = loop.create_future()
        self._results: list[list[Any]] = [[] for _ in statements]
        self._lock = threading.Lock()
        self._next = 0
        self._left = len(statements)
        self._failed = False
        self._depth = threading.local()

    def start(self) -> asyncio.Future[list[list[Any]]]:
        if not self._statements:
            self.future.set_result([])
            return self.future
        for _ in range(min(self._in_flight, len(self._statements))):
            self._start_next()
        return self.future

    def stop(self) -> None:
        """Start no more statements (the awaiting task was cancelled)."""
        with self._lock:
            self._failed = True

    def _start_next(self) -> None:
        with self._lock:
            if self._failed or self._next >= len(self._statements):
                return
            index = self._next
            self._next += 1
        try:
            response = self._session.execute_async(self._statements[index])
        except Exception as exc:
            self._fail(exc)
            return
        rows = self._results[index]

        def on_page(page: Any) -> None:
            rows.extend(page or ())  # writes answer None
            if response.has_more_pages:
                response.start_fetching_next_page()
            else:
                self._done()

        response.add_callbacks(on_page, self._fail)

    def _done(self) -> None:
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._deliver(None)
            return
        depth = getattr(self._depth, "n", 0)
        if depth >= _MAX_DEPTH:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
                self._loop.call_soon_threadsafe(self._start_next)
            return
        self._depth.n = depth + 1
        try:
            self._start_next()
        finally:
            self._depth.n = depth

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            if self._failed:
                return
            self._failed = True
        self._deliver(error)

    def _deliver(self, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._settle, error)

    def _settle(self, error: BaseException | None) -> None:
        if self.future.done():  # the awaiting task was cancelled
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(self._results)
