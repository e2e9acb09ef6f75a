"""Inbox changes reach every open connection of the user, live: done, snooze (and its end),
delete, archive; and a client's copy then matches a fresh HTTP read of everything."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.cluster import Web
from tests.fanout.conftest import WorkerPool
from tests.realtime.client import Client
from tests.realtime.conftest import Live, run_on_processes
from tests.realtime.test_expiry import KEY

pytestmark = pytest.mark.timeout(90)

FEED = "/v1/me/feeds/notification"


async def everything(live: Live, user: str) -> dict[str, dict[str, Any]]:
    response = await live.http.get(
        FEED, params={"status": "all", "limit": 100}, headers=live.user_headers(user)
    )
    assert response.status_code == 200, response.text
    return {g["id"]: g for g in response.json()["groups"]}


def flags(group: dict[str, Any]) -> tuple[Any, ...]:
    return (group["is_seen"], group["is_archived"], group["is_done"], group["snoozed_until"])


async def assert_client_matches_http(live: Live, client: Client) -> None:
    held = client.feeds["notification"].items
    fresh = await everything(live, "bo")
    assert {k: flags(v) for k, v in held.items()} == {k: flags(v) for k, v in fresh.items()}


async def holds(client: Client, predicate: Callable[[dict[str, Any]], bool]) -> None:
    """Take frames until the client's copy of the notification feed satisfies ``predicate``."""
    state = client.feeds["notification"]
    if not predicate(state.items):
        await client.wait_for(lambda _: predicate(state.items))


async def test_done_snooze_and_delete_reach_every_tab_live(live: Live) -> None:
    tabs = [live.client("bo"), live.client("bo")]
    for tab in tabs:
        await tab.connect()
        await tab.subscribe("notification")
    first = await live.post(actor="ana", verb="like", object="photo:1", to=["notification:bo"])
    second = await live.post(actor="cy", verb="like", object="photo:2", to=["notification:bo"])
    for tab in tabs:
        await holds(tab, lambda items: len(items) == 2)
    headers = live.user_headers("bo")

    await live.mark("bo", done=True, group_ids=[second["id"]])
    for tab in tabs:
        await holds(tab, lambda items: items[second["id"]]["is_done"] is True)
        await assert_client_matches_http(live, tab)

    until = datetime.now(UTC) + timedelta(hours=1)
    response = await live.http.post(
        f"{FEED}/snooze",
        json={"group_ids": [first["id"]], "until": until.isoformat()},
        headers=headers,
    )
    assert response.json() == {"unseen": 1, "unread": 1}
    for tab in tabs:
        await tab.wait_for(lambda f: f.get("counts") == {"unseen": 1, "unread": 1})
        held = tab.feeds["notification"].items[first["id"]]
        assert held["is_archived"] is True and held["snoozed_until"] is not None
        await assert_client_matches_http(live, tab)

    await live.http.post(
        f"{FEED}/snooze", json={"group_ids": [first["id"]], "until": None}, headers=headers
    )
    for tab in tabs:
        await tab.wait_for(lambda f: f.get("counts") == {"unseen": 2, "unread": 2})
        assert tab.feeds["notification"].items[first["id"]]["snoozed_until"] is None

    deleted = await live.http.delete(f"{FEED}/groups/{second['id']}", headers=headers)
    assert deleted.status_code == 200, deleted.text
    for tab in tabs:
        await holds(tab, lambda items: second["id"] not in items)
        assert tab.feeds["notification"].counts == {"unseen": 1, "unread": 1}
        await assert_client_matches_http(live, tab)
        await tab.close()


async def watch_wake(http: httpx.AsyncClient, bo: Client) -> None:
    """bo snoozes a notification for two seconds and watches it come back by itself: unseen
    and unread again, counts up, pushed with nothing else called."""
    posted = await http.post(
        "/v1/activities",
        json={"actor": "ana", "verb": "like", "object": "photo:1", "to": ["notification:bo"]},
        headers=KEY,
    )
    assert posted.status_code == 201, posted.text
    gid = posted.json()["id"]
    await bo.connect()
    await bo.subscribe("notification")
    state = bo.feeds["notification"]
    headers = {"Authorization": f"Bearer {bo.token}"}
    marked = await http.post(
        f"{FEED}/mark", json={"seen": True, "read": True, "group_ids": [gid]}, headers=headers
    )
    assert marked.json() == {"unseen": 0, "unread": 0}
    until = datetime.now(UTC) + timedelta(seconds=2)
    response = await http.post(
        f"{FEED}/snooze", json={"group_ids": [gid], "until": until.isoformat()}, headers=headers
    )
    assert response.status_code == 200, response.text
    await holds(bo, lambda items: items.get(gid, {}).get("snoozed_until") is not None)
    await holds(bo, lambda items: items[gid]["snoozed_until"] is None)
    assert datetime.now(UTC) >= until
    woken = state.items[gid]
    assert (woken["is_seen"], woken["is_read"], woken["is_archived"]) == (False, False, False)
    if state.counts != {"unseen": 1, "unread": 1}:
        await bo.wait_for(lambda _: state.counts == {"unseen": 1, "unread": 1})
    fresh = await http.get(FEED, headers=headers)
    assert [g["id"] for g in fresh.json()["groups"]] == [gid]
    await bo.close()


@pytest.mark.parametrize("storage_factory", ["memory"], indirect=True)
async def test_a_snoozed_notification_comes_back_live_on_the_embedded_server(live: Live) -> None:
    await watch_wake(live.http, live.client("bo"))


async def test_a_snoozed_notification_comes_back_live_by_worker_processes(
    processes: tuple[Web, WorkerPool],
) -> None:
    await run_on_processes(processes, "bo", watch_wake)
