"""Webhook escalation end to end: real workers (in-process on memory, a ``notifier worker``
process on Redis), a real HTTP receiver verifying every signature, short configured delays."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from notifier.delivery.signing import verify
from notifier.fanout.timers import Escalate
from notifier.storage.base import Marks
from tests.delivery.conftest import Stack, StackFactory, dies_once_before_scheduling
from tests.fanout.conftest import wait_until


async def settle(seconds: float = 1.2) -> None:
    """Long enough for every timer of the test's rules (0.3 s) to have run, retries too."""
    await asyncio.sleep(seconds)


async def test_an_unseen_group_is_posted_once_signed_after_the_delay(stack: Stack) -> None:
    await stack.endpoint("hooks")
    sent = datetime.now(UTC)
    like = await stack.notify("bo", "ana")
    await wait_until(lambda: _delivered(stack, "ep_hooks"), within=20)
    [got] = stack.webhooks.verified("/hooks")
    waited = (datetime.now(UTC) - sent).total_seconds()
    assert waited >= 0.3, "delivered before the rule's delay"
    event = got.json()
    assert got.headers["webhook-id"] == got.headers["idempotency-key"] == event["delivery_id"]
    assert got.headers["content-type"] == "application/json"
    assert (event["type"], event["user"], event["feed"]) == (
        "notification.unseen",
        "bo",
        "notification",
    )
    assert event["summary"] == "ana liked a photo"
    assert event["group"]["activities"][0]["id"] == like.id
    assert event["group"]["is_seen"] is False
    assert event["rule"] == {"category": "social", "after_s": 0.3, "until": "seen"}
    secret = stack.webhooks.secrets["/hooks"]
    assert (
        verify(secret, got.headers, got.body, datetime.now(UTC).timestamp()) == event["delivery_id"]
    )
    await settle()
    assert len(stack.webhooks.received) == 1
    [stored] = await stack.store.list("ep_hooks", limit=10)
    assert (stored.id, stored.status, stored.attempts) == (event["delivery_id"], "delivered", 1)


async def test_seeing_a_group_before_the_delay_cancels_its_delivery(stack: Stack) -> None:
    await stack.endpoint("hooks")
    await stack.notify("bo", "ana")
    await stack.notify("cy", "ana")
    group = stack.config.feeds["notification"]
    await stack.manager.storage.mark(group, "bo", Marks(seen=True), all=True)
    await wait_until(lambda: _count(stack, 1), within=20)
    await settle()
    assert [r.json()["user"] for r in stack.webhooks.verified()] == ["cy"]


async def test_a_group_that_changes_is_delivered_for_its_last_change_and_again_later(
    stack: Stack,
) -> None:
    await stack.endpoint("hooks")
    await stack.notify("bo", "ana")
    await stack.notify("bo", "dee")  # the same group, before the first delay ran out
    await wait_until(lambda: _count(stack, 1), within=20)
    await settle(0.8)
    [first] = stack.webhooks.verified()
    assert first.json()["summary"] == "dee and ana liked a photo"
    # A change after the delivery re-arms the rule: one more delivery, under a new id.
    await stack.notify("bo", "eve")
    await wait_until(lambda: _count(stack, 2), within=20)
    await settle(0.8)
    second = stack.webhooks.verified()[1]
    assert second.json()["group"]["id"] == first.json()["group"]["id"]
    assert second.json()["delivery_id"] != first.json()["delivery_id"]
    assert second.json()["group"]["activity_count"] == 3
    assert len(stack.webhooks.received) == 2


async def test_failed_attempts_are_retried_under_one_id_until_one_succeeds(stack: Stack) -> None:
    await stack.endpoint("flaky")
    stack.webhooks.answers["/flaky"] = [500, 503]
    await stack.notify("bo", "ana")
    await wait_until(lambda: _delivered(stack, "ep_flaky"), within=20)
    attempts = stack.webhooks.verified()
    assert [r.status for r in attempts] == [500, 503, 200]
    assert len({r.delivery_id for r in attempts}) == 1
    [stored] = await stack.store.list("ep_flaky", limit=10)
    assert (stored.status, stored.attempts, stored.last_error) == ("delivered", 3, "")


async def test_the_last_failure_leaves_a_dead_letter_that_a_replay_sends(stack: Stack) -> None:
    await stack.endpoint("down")
    stack.webhooks.answers["/down"] = [500, 502, 500]
    await stack.notify("bo", "ana")

    async def dead() -> bool:
        return bool(await stack.store.list("ep_down", limit=10, status="dead"))

    await wait_until(dead, within=20)
    [letter] = await stack.store.list("ep_down", limit=10, status="dead")
    assert (letter.attempts, letter.last_error) == (3, "HTTP 500")
    await settle(0.5)
    assert len(stack.webhooks.received) == 3  # no attempt after the last
    again = await stack.manager.escalation.replay(letter.scope, letter.id)
    assert again is not None and again.status == "pending"
    await wait_until(lambda: _delivered(stack, "ep_down"), within=20)
    assert {r.delivery_id for r in stack.webhooks.verified()} == {letter.id}
    [stored] = await stack.store.list("ep_down", limit=10)
    assert (stored.status, stored.attempts) == ("delivered", 4)


async def test_an_endpoint_nobody_listens_on_is_retried_then_dead(stack: Stack) -> None:
    from notifier.delivery.model import Endpoint
    from notifier.delivery.signing import new_secret
    from tests.services import free_port

    closed = f"http://127.0.0.1:{free_port()}/gone"
    await stack.store.put_endpoint(Endpoint(
        id="ep_gone", url=closed, secret=new_secret(), created_at=datetime.now(UTC)))  # fmt: skip
    await stack.notify("bo", "ana")

    async def dead() -> bool:
        return bool(await stack.store.list("ep_gone", limit=10, status="dead"))

    await wait_until(dead, within=20)
    [letter] = await stack.store.list("ep_gone", limit=10)
    assert letter.attempts == 3 and "Connect" in letter.last_error


async def test_endpoints_categories_and_users_channels_decide_who_gets_what(
    stack: Stack,
) -> None:
    from notifier.preferences import Preferences

    await stack.endpoint("billing", frozenset({"billing"}))
    await stack.endpoint("all")
    await stack.manager.storage.put_preferences(
        "cy", Preferences(channels={"webhook": frozenset({"social"})})
    )
    await stack.notify("bo", "ana")  # social
    await stack.notify("cy", "ana")  # social, which cy turned off for webhooks
    await stack.notify("cy", "acme", verb="invoice", obj="receipt:7")  # billing
    await wait_until(lambda: _count(stack, 3), within=20)
    await settle()
    got = {
        (r.path, r.json()["user"], r.json()["group"]["category"]) for r in stack.webhooks.verified()
    }
    assert got == {
        ("/billing", "cy", "billing"),
        ("/all", "cy", "billing"),
        ("/all", "bo", "social"),
    }
    assert len(stack.webhooks.received) == 3


async def test_a_category_rule_overrides_the_default(make_stack: StackFactory) -> None:
    stack = await make_stack(
        rules={
            "default": {"webhook": '{ after_s = 0.3, until = "seen" }'},
            "social": {"webhook": "false"},
            "billing": {"webhook": '{ after_s = 0.6, until = "read" }'},
        }
    )
    await stack.endpoint("hooks")
    await stack.notify("bo", "ana")
    await stack.notify("bo", "acme", verb="invoice", obj="receipt:7")
    group = stack.config.feeds["notification"]
    await stack.manager.storage.mark(group, "bo", Marks(seen=True), all=True)  # not read
    await wait_until(lambda: _count(stack, 1), within=20)
    await settle()
    [got] = stack.webhooks.verified()
    event = got.json()
    assert (event["type"], event["group"]["category"], event["group"]["is_seen"]) == (
        "notification.unread", "billing", True
    )  # fmt: skip


async def test_a_timer_that_runs_again_sends_the_decision_it_made_not_a_new_one(
    stack: Stack,
) -> None:
    await stack.endpoint("hooks")
    like = await stack.notify("bo", "ana")
    await wait_until(lambda: _acknowledged(stack, 1), within=20)
    job = Escalate(group="notification", users=["bo"], activity_ids=[like.id])
    # What a redelivered timer does (its worker died after deciding): decide again.
    await stack.manager.escalation.run_escalate(job)
    await stack.manager.escalation.run_escalate(job)
    await settle()
    assert len(stack.webhooks.received) == 1
    assert len(await stack.store.list("ep_hooks", limit=10)) == 1


async def test_a_decision_whose_worker_died_before_its_attempt_is_sent_by_the_next_run(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run of the timer decides (claims) the delivery and dies before it schedules the
    attempt; the user sees the group before the timer runs again. That run decides nothing
    new, but sends what the first one decided: once, under its id."""
    await stack.endpoint("hooks")
    escalation = stack.manager.escalation
    monkeypatch.setattr(escalation, "timers_for", lambda *args: [])  # only the runs below
    like = await stack.notify("bo", "ana")
    job = Escalate(group="notification", users=["bo"], activity_ids=[like.id])
    with dies_once_before_scheduling(escalation, monkeypatch), pytest.raises(ConnectionError):
        await escalation.run_escalate(job)
    await settle()
    assert stack.webhooks.received == []
    [decided] = await stack.store.list("ep_hooks", limit=10)
    assert (decided.status, decided.attempts) == ("pending", 0)
    group = stack.config.feeds["notification"]
    await stack.manager.storage.mark(group, "bo", Marks(seen=True), all=True)
    await escalation.run_escalate(job)  # the timer again (dramatiq redelivers it)
    await wait_until(lambda: _delivered(stack, "ep_hooks"), within=20)
    await settle()
    assert [r.delivery_id for r in stack.webhooks.verified()] == [decided.id]


async def test_a_fanout_escalates_each_followers_copy_once(stack: Stack) -> None:
    """ana's post reaches 450 followers' fanout notification feeds in chunks of 200; each
    follower's copy is one delivery, decided by one timer per chunk."""
    followers = [f"f{n:03d}" for n in range(450)]
    for user in followers:
        await stack.manager.follow(user, "ana", backfill=0)
    await stack.endpoint("hooks")
    post = stack.app.activity(actor="ana", verb="like", object="photo:1")
    await stack.manager.add_activity(post)
    await wait_until(lambda: _delivered(stack, "ep_hooks", len(followers)), within=60)
    await settle()
    delivered = await stack.store.list("ep_hooks", limit=1000)
    assert sorted(d.user for d in delivered) == followers
    assert {d.status for d in delivered} == {"delivered"}
    assert len(stack.webhooks.received) == len(followers)
    assert {r.json()["feed"] for r in stack.webhooks.verified()} == {"digest"}


async def _count(stack: Stack, n: int) -> bool:
    return len(stack.webhooks.verified()) >= n


async def _acknowledged(stack: Stack, n: int) -> bool:
    return sum(stack.webhooks.acknowledged.values()) >= n


async def _delivered(stack: Stack, endpoint_id: str, n: int = 1) -> bool:
    """Whether ``n`` deliveries to the endpoint are recorded delivered (after the receiver's
    answer, the worker still writes that down)."""
    found = await stack.store.list(endpoint_id, limit=1000, status="delivered")
    return len(found) >= n
