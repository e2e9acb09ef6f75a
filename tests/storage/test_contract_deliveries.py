"""The delivery store contract: every backend keeps decisions, marks and endpoints alike, and
its compare-and-set steps (claim, begin, finish) let exactly one of concurrent callers win."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from notifier.delivery.model import Delivery, Endpoint, Outcome, make_id
from notifier.delivery.store import DeliveryStore, deliveries_for
from notifier.storage.base import Storage
from tests.storage.helpers import aid

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """``seconds`` after NOW."""
    return NOW + timedelta(seconds=seconds)


@pytest.fixture
def store(storage: Storage) -> DeliveryStore:
    return deliveries_for(storage)


def delivery(
    n: int, *, target: str = "ep1", user: str = "bo", digest: bool = False, payload: bytes = b"{}"
) -> Delivery:
    delivery_id = make_id(aid(n), target, user, str(n))
    return Delivery(
        id=delivery_id,
        channel="email" if digest else "webhook",
        target=user if digest else target,
        scope=user if digest else delivery_id,
        user=user,
        payload=payload,
        created_at=NOW,
    )


def endpoint(name: str, categories: frozenset[str] | None = None) -> Endpoint:
    return Endpoint(
        id=name, url=f"http://127.0.0.1:9/{name}", secret="whsec_c2VjcmV0",
        categories=categories, created_at=NOW,
    )  # fmt: skip


async def test_endpoints_round_trip_replace_and_delete(store: DeliveryStore) -> None:
    assert await store.endpoints() == []
    await store.put_endpoint(endpoint("ep2"))
    await store.put_endpoint(endpoint("ep1", frozenset({"social", "billing"})))
    assert [e.id for e in await store.endpoints()] == ["ep1", "ep2"]
    assert (await store.endpoints())[0].categories == frozenset({"social", "billing"})
    changed = endpoint("ep2", frozenset())
    await store.put_endpoint(changed)
    assert (await store.endpoints())[1] == changed
    assert await store.delete_endpoint("ep2") is True
    assert await store.delete_endpoint("ep2") is False
    assert [e.id for e in await store.endpoints()] == ["ep1"]


async def test_a_claim_creates_once_and_returns_the_stored_one_after(store: DeliveryStore) -> None:
    first = delivery(1, payload=b'{"a": 1}')
    assert await store.claim(first) == (first, True)
    rival = Delivery(**{**_fields(first), "payload": b'{"a": 2}'})
    assert await store.claim(rival) == (first, False)
    assert await store.get(first.scope, first.id) == first
    assert await store.get(first.scope, "0" * 42) is None
    assert await store.get("someone-else", first.id) is None


async def test_marks_are_written_with_the_claim_that_creates_and_only_then(
    store: DeliveryStore,
) -> None:
    digest = delivery(1, digest=True)
    _, created = await store.claim(digest, {"notifications:g1": aid(5), "notifications:g2": aid(6)})
    assert created
    again = delivery(1, digest=True)
    _, created = await store.claim(again, {"notifications:g1": aid(9), "notifications:g3": aid(9)})
    assert not created
    found = await store.marks("bo", ["notifications:g1", "notifications:g2", "notifications:g3"])
    assert found == {"notifications:g1": aid(5), "notifications:g2": aid(6)}
    later = delivery(2, digest=True)
    await store.claim(later, {"notifications:g1": aid(7)})
    assert await store.marks("bo", ["notifications:g1"]) == {"notifications:g1": aid(7)}
    assert await store.marks("cy", ["notifications:g1"]) == {}
    assert await store.marks("bo", []) == {}


async def test_of_concurrent_claims_exactly_one_creates(store: DeliveryStore) -> None:
    claims = [
        Delivery(**{**_fields(delivery(3, digest=True)), "payload": f'{{"n": {n}}}'.encode()})
        for n in range(8)
    ]
    results = await asyncio.gather(
        *(store.claim(c, {"notifications:g": str(n)}) for n, c in enumerate(claims))
    )
    winners = [n for n, (_, created) in enumerate(results) if created]
    assert len(winners) == 1
    [winner] = winners
    assert {stored.payload for stored, _ in results} == {claims[winner].payload}
    assert await store.marks("bo", ["notifications:g"]) == {"notifications:g": str(winner)}


async def test_begin_counts_attempts_holds_a_lease_and_refuses_while_it_lasts(
    store: DeliveryStore,
) -> None:
    d = delivery(1)
    await store.claim(d)
    started = await store.begin(d.scope, d.id, NOW, NOW + timedelta(seconds=30))
    assert started is not None
    assert (started.attempts, started.lease_until) == (1, NOW + timedelta(seconds=30))
    assert await store.begin(d.scope, d.id, at(29), at(60)) is None
    # The lease ran out (the attempt's worker died): the next attempt may start.
    later = NOW + timedelta(seconds=31)
    second = await store.begin(d.scope, d.id, later, later + timedelta(seconds=30))
    assert second is not None and second.attempts == 2
    assert await store.begin(d.scope, "0" * 42, NOW, NOW) is None


async def test_of_concurrent_begins_exactly_one_wins(store: DeliveryStore) -> None:
    d = delivery(1)
    await store.claim(d)
    results = await asyncio.gather(
        *(store.begin(d.scope, d.id, NOW, NOW + timedelta(seconds=30)) for _ in range(8))
    )
    assert [r.attempts for r in results if r is not None] == [1]


async def test_finish_records_the_outcome_of_the_current_attempt_only(store: DeliveryStore) -> None:
    d = delivery(1)
    await store.claim(d)
    await store.begin(d.scope, d.id, NOW, NOW + timedelta(seconds=30))
    failed = Outcome(status="pending", at=NOW + timedelta(seconds=1), error="HTTP 503")
    assert await store.finish(d.scope, d.id, 1, failed) is True
    stored = await store.get(d.scope, d.id)
    assert stored is not None
    assert (stored.status, stored.last_error) == ("pending", "HTTP 503")
    assert stored.updated_at == failed.at
    assert stored.lease_until <= NOW  # the lease ended with the attempt: a retry may begin now
    assert await store.begin(d.scope, d.id, at(2), at(60)) is not None
    # Attempt 1 reporting late (after attempt 2 began) changes nothing.
    late = Outcome(status="delivered", at=NOW + timedelta(seconds=3))
    assert await store.finish(d.scope, d.id, 1, late) is False
    done = Outcome(status="delivered", at=NOW + timedelta(seconds=4))
    assert await store.finish(d.scope, d.id, 2, done) is True
    stored = await store.get(d.scope, d.id)
    assert stored is not None
    assert (stored.status, stored.attempts, stored.delivered_at, stored.last_error) == (
        "delivered", 2, done.at, ""
    )  # fmt: skip
    # Delivered: no attempt begins again.
    assert await store.begin(d.scope, d.id, at(86_400), at(172_800)) is None


async def test_a_dead_delivery_is_replayed_as_pending_keeping_its_attempts(
    store: DeliveryStore,
) -> None:
    d = delivery(1)
    await store.claim(d)
    await store.begin(d.scope, d.id, NOW, NOW + timedelta(seconds=30))
    await store.finish(d.scope, d.id, 1, Outcome(status="dead", at=NOW, error="HTTP 410"))
    assert await store.begin(d.scope, d.id, at(86_400), at(172_800)) is None
    again = await store.replay(d.scope, d.id, NOW + timedelta(minutes=5))
    assert again is not None
    assert (again.status, again.attempts, again.updated_at) == (
        "pending", 1, NOW + timedelta(minutes=5)
    )  # fmt: skip
    assert await store.get(d.scope, d.id) == again
    third = await store.begin(d.scope, d.id, NOW + timedelta(minutes=6), NOW + timedelta(minutes=7))
    assert third is not None and third.attempts == 2
    assert await store.replay(d.scope, "0" * 42, NOW) is None


async def test_list_is_newest_first_per_target_with_a_cursor_and_a_status(
    store: DeliveryStore,
) -> None:
    made = [delivery(n, target="ep1") for n in range(1, 8)]
    for d in [*made[3:], *made[:3]]:
        await store.claim(d)
    await store.claim(delivery(9, target="ep2"))
    await store.claim(delivery(10, digest=True))
    newest_first = [d.id for d in reversed(made)]
    assert [d.id for d in await store.list("ep1", limit=100)] == newest_first
    assert [d.id for d in await store.list("ep1", limit=3)] == newest_first[:3]
    page = await store.list("ep1", limit=3, before=newest_first[2])
    assert [d.id for d in page] == newest_first[3:6]
    assert [d.id for d in await store.list("bo", limit=10)] == [delivery(10, digest=True).id]
    assert await store.list("nobody", limit=10) == []
    for d in made[1:3]:
        await store.begin(d.scope, d.id, NOW, NOW + timedelta(seconds=1))
        await store.finish(d.scope, d.id, 1, Outcome(status="dead", at=NOW, error="x"))
    dead = await store.list("ep1", limit=10, status="dead")
    assert [d.id for d in dead] == [made[2].id, made[1].id]
    assert [d.id for d in await store.list("ep1", limit=1, status="dead")] == [made[2].id]
    pending = await store.list("ep1", limit=100, status="pending")
    assert len(pending) == 5


async def test_a_listed_delivery_shows_its_latest_state(store: DeliveryStore) -> None:
    d = delivery(1)
    await store.claim(d)
    await store.begin(d.scope, d.id, NOW, NOW + timedelta(seconds=1))
    await store.finish(d.scope, d.id, 1, Outcome(status="delivered", at=NOW))
    [listed] = await store.list("ep1", limit=10)
    assert listed == await store.get(d.scope, d.id)
    assert listed.status == "delivered"


def _fields(d: Delivery) -> dict[str, object]:
    import msgspec

    return msgspec.structs.asdict(d)


async def test_a_replay_keeps_the_lease_of_an_attempt_still_running(store: DeliveryStore) -> None:
    d = delivery(1)
    await store.claim(d)
    await store.begin(d.scope, d.id, NOW, at(30))
    again = await store.replay(d.scope, d.id, at(1))
    assert again is not None and again.lease_until == at(30)
    assert await store.begin(d.scope, d.id, at(2), at(60)) is None  # no overlap
    assert await store.begin(d.scope, d.id, at(31), at(60)) is not None
