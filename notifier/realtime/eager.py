"""Start a coroutine eagerly: run it at once, and make a task only if it has to wait.

A fanout hands the same, already encoded frame to hundreds of connections in one go, and
sending it to a client whose socket is not backed up never waits (the ASGI server writes to
the transport at once). A task per delivery cost more than the delivery itself: the task
object, a trip through the event loop, the coroutine stack built again from the top. Python
3.12's eager task factory does exactly this for every task; this is the same idea for the
one place that needs it, on Python 3.11.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def start_eagerly(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run ``coro`` up to its first real wait. None when it finished without one (its
    exceptions propagate, as from a plain call); otherwise the task that carries it on."""
    try:
        waiting = coro.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(_carry_on(coro, waiting))


async def _carry_on(coro: Coroutine[Any, Any, None], waiting: Any) -> None:
    """What ``asyncio.Task`` does for a coroutine that already started: wait for what it
    waits on, then resume it (throwing in this task's cancellation, if that came first)."""
    while True:
        try:
            if waiting is None:  # a bare yield (asyncio.sleep(0)): just let the loop run
                await asyncio.sleep(0)
            else:
                waiting._asyncio_future_blocking = False  # as Task does with what it gets
                await asyncio.wait([waiting])  # done either way; its outcome is coro's to see
        except asyncio.CancelledError as cancelled:
            if isinstance(waiting, asyncio.Future):
                waiting.cancel()
            try:
                waiting = coro.throw(cancelled)
            except StopIteration:
                return
            continue
        try:
            waiting = coro.send(None)
        except StopIteration:
            return
