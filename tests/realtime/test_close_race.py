"""A connection that ends while its sender waits for storage never sends after its close.

The sender (a task) is stopped by cancellation, but on Python 3.11 ``asyncio.wait_for``
(which redis-py awaits inside a command) swallows a cancellation that arrives after its
result is in, and returns the result: the sender then went on to send on a closed
websocket (an ERROR, and a 1011 attempt). Here a storage read waits in ``wait_for`` on a
gate that the test opens in the same instant as it ends the connection: the cancellation
lands exactly in that window, every time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

import pytest

from notifier.feedgroups import FeedGroup
from notifier.realtime.connection import Connection
from notifier.storage.base import Counts, StoredGroup
from notifier.storage.memory import MemoryStorage
from tests.realtime.conftest import Live, LiveFactory

pytestmark = pytest.mark.timeout(30)


class GatedReads(MemoryStorage):
    """Memory storage whose notification reads wait in ``asyncio.wait_for`` on a gate while
    one is set (as redis-py's commands do on their timeouts)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: asyncio.Future[None] | None = None
        self.waiting = asyncio.Event()

    async def read_page(
        self, group: FeedGroup, user: str, *, limit: int, id_lt: str | None = None,
        id_gt: str | None = None,
    ) -> tuple[list[StoredGroup], Counts]:  # fmt: skip
        if self.gate is not None:
            self.waiting.set()
            await asyncio.wait_for(self.gate, 10)
        return await super().read_page(group, user, limit=limit, id_lt=id_lt, id_gt=id_gt)


@pytest.fixture
async def storage() -> AsyncIterator[GatedReads]:
    yield GatedReads()


def connections(live: Live, user: str) -> Sequence[Connection]:
    listeners = live.services.realtime.hub.listeners._by_user  # type: ignore[attr-defined]
    return [c for c in listeners.get(user, {}) if isinstance(c, Connection)]


async def test_a_sender_cancelled_as_its_read_completes_does_not_send_after_the_close(
    live_factory: LiveFactory, storage: GatedReads, caplog: pytest.LogCaptureFixture
) -> None:
    live: Live = await live_factory()
    bo = live.client("bo")
    await bo.connect()
    await bo.subscribe("notification")
    storage.gate = asyncio.get_running_loop().create_future()
    await live.post(actor="ana", verb="like", object="like:1", target="photo:1",
                    to=["notification:bo"])  # fmt: skip
    await asyncio.wait_for(storage.waiting.wait(), 5)  # the sender waits in the read
    [connection] = connections(live, "bo")
    storage.gate.set_result(None)  # the read's result is in...
    connection.close(1000, "")  # ...and the connection ends before the sender resumes
    for _ in range(50):
        await asyncio.sleep(0.01)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors
    assert bo.ws is not None
    await bo.close()
