"""Expiry seen live: a websocket client watches an expiring activity arrive and leave (its
timer's removal pushed to it, counts included), on the embedded server and on ``notifier
serve`` + ``notifier worker`` processes over Redis; and flat feeds' frames leave an expired
activity out before its timer has run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from notifier.feeds import entries_for
from notifier.realtime.bus import UserEvent
from notifier.storage.base import Storage
from tests.e2e.cluster import Web
from tests.fanout.conftest import WorkerPool
from tests.realtime.client import Client
from tests.realtime.conftest import Live, run_on_processes
from tests.web.conftest import API_KEY

pytestmark = pytest.mark.timeout(90)

KEY = {"Authorization": f"Bearer {API_KEY}"}


def in_(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def until(client: Client, condition: Callable[[], bool], within: float = 10) -> None:
    """Take frames (applying them) until ``condition`` holds of the client's state."""
    if not condition():
        await client.wait_for(lambda _: condition(), within)


async def watch_expiry(http: httpx.AsyncClient, bo: Client) -> None:
    """bo follows ana and watches timeline and notification while ana's expiring post comes
    and goes; bo's client ends with nothing, as a fresh read has."""
    response = await http.post("/v1/follows", json={"user": "bo", "target": "ana"}, headers=KEY)
    assert response.status_code in (200, 201), response.text
    await bo.connect()
    await bo.subscribe("timeline")
    await bo.subscribe("notification")

    expires = in_(2)
    activity = {"actor": "ana", "verb": "post", "object": "post:1", "to": ["notification:bo"],
                "expires_at": expires.isoformat()}  # fmt: skip
    response = await http.post("/v1/activities", json=activity, headers=KEY)
    assert response.status_code == 201, response.text
    posted = response.json()["id"]
    timeline, notification = bo.feeds["timeline"], bo.feeds["notification"]
    # The "to" feed's update and the fanout's, in either order.
    await until(bo, lambda: list(timeline.items) == [posted]
                and notification.counts == {"unseen": 1, "unread": 1})  # fmt: skip
    assert datetime.now(UTC) < expires

    # Nothing more is called: the timer removes it, and the removal is pushed.
    seen = len(bo.frames)
    await until(bo, lambda: not timeline.items, within=20)
    assert datetime.now(UTC) >= expires
    removed = {"type": "removed", "feed": "timeline", "activity_ids": [posted], "position": posted}
    assert removed in bo.frames[seen:]
    await until(bo, lambda: notification.counts == {"unseen": 0, "unread": 0})
    assert timeline.items == {}
    assert notification.items == {}
    headers = {"Authorization": f"Bearer {bo.token}"}
    counts = (await http.get("/v1/me/feeds/notification/counts", headers=headers)).json()
    assert counts == {"unseen": 0, "unread": 0}
    await bo.close()


@pytest.mark.parametrize("storage_factory", ["memory"], indirect=True)
async def test_an_expiring_activity_is_pushed_out_live_on_the_embedded_server(live: Live) -> None:
    await watch_expiry(live.http, live.client("bo"))


async def test_an_expiring_activity_is_pushed_out_live_by_worker_processes(
    processes: tuple[Web, WorkerPool],
) -> None:
    await run_on_processes(processes, "bo", watch_expiry)


@pytest.mark.parametrize("storage_factory", ["memory", "redis"], indirect=True)
async def test_flat_frames_leave_out_an_expired_activity_before_its_timer_runs(
    live: Live, storage: Storage
) -> None:
    app = live.services.notifier
    timeline = app.config.feeds["timeline"]

    def post(n: int, **extra: Any) -> Any:
        return app.activity(actor="ana", verb="post", object=f"post:{n}", **extra)

    old = post(1, expires_at=in_(0.3))
    stays = post(2)
    new = post(3, expires_at=in_(0.3))
    # Written as fanout chunks write them, but with no timer: only the frames can hide them.
    await storage.put_activities([old, stays, new])
    await storage.add_to_feeds(timeline, ["bo"], entries_for(timeline, [old, stays, new]))
    await asyncio.sleep(max(0.0, (new.expires_at - datetime.now(UTC)).total_seconds()) + 0.05)

    bo = live.client("bo")
    await bo.connect()
    first = await bo.subscribe("timeline")
    assert first["type"] == "sync"
    assert [a["id"] for a in first["activities"]] == [stays.id]

    # Late announcements of their addition (a slow fanout's chunk): newer than what the
    # client holds (the shared frame) and older (the client's own frame).
    for expired in (new, old):
        event = UserEvent(user="bo", feed="timeline", kind="added", activity_ids=[expired.id])
        await live.services.bus.publish([event])
        frame = await bo.wait_for(lambda f: f["feed"] == "timeline")
        assert frame["type"] == "update" and not frame.get("activities"), frame
    assert list(bo.feeds["timeline"].items) == [stays.id]
    await bo.close()
