"""Email digests end to end: real workers, a real SMTP server (aiosmtpd) whose messages the
tests parse, one-second windows and a 0.3 s rule (tests/delivery/conftest.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.message import EmailMessage
from urllib.parse import urlsplit

import httpx
import pytest

from notifier.delivery.engine import window_start
from notifier.fanout.timers import Digest
from notifier.preferences import Preferences
from notifier.storage.base import Marks
from notifier.web.app import create_app
from notifier.web.wiring import build_services
from tests.delivery.conftest import Stack, StackFactory, dies_once_before_scheduling
from tests.fanout.conftest import wait_until
from tests.web.conftest import close_services, server_settings


async def addressed(stack: Stack, *users: str) -> None:
    for user in users:
        await stack.manager.storage.put_preferences(user, Preferences(email=f"{user}@example.com"))


async def emails(stack: Stack, n: int, within: float = 20) -> list[EmailMessage]:
    async def arrived() -> bool:
        return len(stack.smtp.messages) >= n

    await wait_until(arrived, within=within)
    return [r.message for r in stack.smtp.messages]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


async def test_one_email_per_user_and_window_lists_every_group_that_fell_due(
    stack: Stack,
) -> None:
    await addressed(stack, "bo")
    await stack.notify("bo", "ana")
    await stack.notify("bo", "dee")  # the same group: "dee and ana liked a photo"
    await stack.notify("bo", "cy", verb="comment", obj="post:9")
    await stack.notify("bo", "acme", verb="invoice", obj="receipt:7")
    [message] = await emails(stack, 1)
    await asyncio.sleep(2.5)  # two more windows: nothing more to send
    assert len(stack.smtp.messages) == 1
    [received] = stack.smtp.messages
    assert received.rcpts == ["bo@example.com"]
    assert message.get_content_type() == "multipart/alternative"
    text = text_of(message)
    for line in ("dee and ana liked a photo", "cy commented on a post",
                 "acme invoiced a receipt"):  # fmt: skip
        assert line in text, text
    assert "dee and ana liked a photo" in html_of(message)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Unsubscribe"].startswith("<http://127.0.0.1:8999/v1/unsubscribe?token=")
    [digest] = await stack.store.list("bo", limit=10)
    assert digest.channel == "email" and digest.status == "delivered"
    assert message["Message-ID"] == f"<{digest.id}@localhost>"  # the sender's domain


async def test_groups_read_in_time_and_users_without_an_address_or_with_email_off_get_none(
    stack: Stack,
) -> None:
    await addressed(stack, "bo", "dee")
    await stack.manager.storage.put_preferences(
        "dee", Preferences(email="dee@example.com", channels={"email": frozenset({"social"})})
    )
    await stack.notify("bo", "ana")
    await stack.notify("bo", "cy", verb="comment", obj="post:9")
    await stack.notify("cy", "ana")  # cy has no address
    await stack.notify("dee", "ana")  # social: off for dee by email
    await stack.notify("dee", "acme", verb="invoice", obj="receipt:7")
    group = stack.config.feeds["notification"]
    page = await stack.app.feed("notification", "bo").read()
    liked = next(g for g in page.groups if g.verb == "like")
    await stack.manager.storage.mark(group, "bo", Marks(read=True), group_ids=[liked.id])
    messages = await emails(stack, 2)
    await asyncio.sleep(2)
    assert len(stack.smtp.messages) == 2
    by_rcpt = {r.rcpts[0]: r.message for r in stack.smtp.messages}
    assert set(by_rcpt) == {"bo@example.com", "dee@example.com"}
    bo = text_of(by_rcpt["bo@example.com"])
    assert "cy commented on a post" in bo and "liked" not in bo
    dee = text_of(by_rcpt["dee@example.com"])
    assert "acme invoiced a receipt" in dee and "liked" not in dee
    assert len(messages) == 2


async def test_an_emailed_group_comes_again_only_after_it_changes(stack: Stack) -> None:
    await addressed(stack, "bo")
    await stack.notify("bo", "ana")
    [first] = await emails(stack, 1)
    await asyncio.sleep(2.2)
    assert len(stack.smtp.messages) == 1
    await stack.notify("bo", "dee")  # the same group changes: emailed again, in a new digest
    second = (await emails(stack, 2))[1]
    await asyncio.sleep(2.2)
    assert len(stack.smtp.messages) == 2
    assert "dee and ana liked a photo" in text_of(second)
    assert first["Message-ID"] != second["Message-ID"]


async def test_a_digest_decided_by_a_run_that_died_before_its_attempt_is_sent_by_the_next(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run of the window's timer decides (claims) bo's digest, marking its groups, and dies
    before it schedules the attempt; bo reads everything before the timer runs again. That
    run finds nothing due, but sends the email the first one decided: once."""
    await addressed(stack, "bo")
    escalation = stack.manager.escalation
    monkeypatch.setattr(escalation, "timers_for", lambda *args: [])  # only the runs below
    await stack.notify("bo", "ana")
    await asyncio.sleep(0.5)  # the rule's 0.3 s: the group is due
    start = window_start(datetime.now(UTC), stack.config.delivery.digest.window_s)
    job = Digest(users=["bo"], window_start=start)
    with dies_once_before_scheduling(escalation, monkeypatch), pytest.raises(ConnectionError):
        await escalation.run_digest(job)
    await asyncio.sleep(1.2)
    assert stack.smtp.messages == []
    [decided] = await stack.store.list("bo", limit=10)
    assert (decided.status, decided.attempts) == ("pending", 0)
    group = stack.config.feeds["notification"]
    await stack.manager.storage.mark(group, "bo", Marks(seen=True, read=True), all=True)
    await escalation.run_digest(job)  # the timer again (dramatiq redelivers it)
    [message] = await emails(stack, 1)
    assert message["Message-ID"] == f"<{decided.id}@localhost>"
    await asyncio.sleep(1.2)
    assert len(stack.smtp.messages) == 1


async def test_a_refused_digest_is_retried_and_a_rejected_one_is_a_dead_letter(
    stack: Stack,
) -> None:
    await addressed(stack, "bo", "cy")
    stack.smtp.refuse_data = "451 4.3.0 try again later"
    await stack.notify("bo", "ana")

    async def attempted(user: str, status: str, attempts: int = 1) -> bool:
        found = await stack.store.list(user, limit=10)
        return bool(found) and found[0].status == status and found[0].attempts >= attempts

    await wait_until(lambda: attempted("bo", "pending", 2), within=20)
    stack.smtp.refuse_data = None
    await wait_until(lambda: attempted("bo", "delivered"), within=20)
    assert [r.rcpts for r in stack.smtp.messages] == [["bo@example.com"]]
    stack.smtp.refuse_data = "550 5.7.1 rejected"
    await stack.notify("cy", "ana")
    await wait_until(lambda: attempted("cy", "dead"), within=20)
    [letter] = await stack.store.list("cy", limit=10)
    assert letter.attempts == 1 and "550" in letter.last_error  # permanent: no retry


async def test_the_one_click_unsubscribe_of_a_digest_stops_the_next_ones(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack()
    await addressed(stack, "bo")
    await stack.notify("bo", "ana")
    [message] = await emails(stack, 1)
    link = urlsplit(message["List-Unsubscribe"].strip("<>"))
    services = build_services(stack.config, server_settings(), storage=stack.manager.storage)
    try:
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://mail") as http:
            # What a mail client sends for RFC 8058's one click: a POST, no cookies, no Origin.
            answer = await http.post(
                f"{link.path}?{link.query}", content=b"List-Unsubscribe=One-Click",
                headers={"content-type": "application/x-www-form-urlencoded"},
            )  # fmt: skip
        assert answer.status_code == 200, answer.text
    finally:
        await close_services(services)
    prefs = (await stack.manager.storage.preferences(["bo"]))["bo"]
    assert prefs.channels == {"email": frozenset({"*"})} and prefs.email == "bo@example.com"
    await stack.notify("bo", "cy", verb="comment", obj="post:9")
    await asyncio.sleep(2.5)
    assert len(stack.smtp.messages) == 1
