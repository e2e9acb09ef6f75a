"""Digest emails: rendered, sent to a real SMTP server (tests/delivery/smtp.py), read back;
and what each way of failing to send means for a retry."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from notifier.delivery.email import (
    ATTEMPT_TIMEOUTS,
    DigestData,
    DigestItem,
    EmailFailed,
    digest_item,
    render_digest,
    send_email,
)
from notifier.delivery.settings import DeliverySettings, EmailSettings
from notifier.delivery.unsubscribe import read_unsubscribe_token
from notifier.feeds import Group
from notifier.model import Activity, VerbRegistry
from tests.delivery.smtp import SmtpReceiver, receiving, server_context
from tests.services import free_port

NOW = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
DELIVERY = "0" * 14 + "a" * 12 + "b" * 16
SETTINGS = DeliverySettings(
    public_url="https://notify.example.com", secret="k" * 40, unsubscribe_ttl=timedelta(days=30)
)


def item(summary: str = "ana and 3 others liked your photo", **fields: Any) -> DigestItem:
    base: dict[str, Any] = {
        "feed": "notification", "group_id": "g-" + summary[:8], "position": "0" * 26,
        "category": "social", "verb": "like", "summary": summary, "actors": ["ana"],
        "activity_count": 4, "updated_at": NOW - timedelta(minutes=40),
    }  # fmt: skip
    return DigestItem(**(base | fields))


def digest(*items: DigestItem, more: int = 0, address: str = "bo@example.com") -> DigestData:
    return DigestData(
        delivery_id=DELIVERY, user="bo", address=address,
        window_start=NOW - timedelta(hours=1), window_end=NOW,
        items=list(items) or [item()], more=more,
    )  # fmt: skip


def settings_for(smtp: SmtpReceiver) -> DeliverySettings:
    return DeliverySettings(
        public_url=SETTINGS.public_url, secret=SETTINGS.secret, email=smtp.settings()
    )


def parts(message: EmailMessage) -> tuple[str, str]:
    """The text and the HTML of a digest, checking it is multipart/alternative of both."""
    assert message.get_content_type() == "multipart/alternative"
    kinds = [p.get_content_type() for p in message.iter_parts()]
    assert kinds == ["text/plain", "text/html"]
    text, html = (p for p in message.iter_parts() if isinstance(p, EmailMessage))
    return text.get_content(), html.get_content()


async def test_a_digest_is_sent_as_text_and_html_with_its_headers(smtp: SmtpReceiver) -> None:
    data = digest(
        item(url="https://app.example/photos/1?from=mail&x=1"),
        item("cy mentioned you in a post", verb="mention"),
        more=3,
    )
    settings = settings_for(smtp)
    await send_email(render_digest(data, settings, now=NOW), settings.email)

    [received] = smtp.messages
    assert received.mail_from == "notifier@example.com"
    assert received.rcpts == ["bo@example.com"]
    message = received.message
    assert message["Subject"] == "5 new notifications"
    assert message["From"] == "Notifier <notifier@example.com>"
    assert message["To"] == "bo@example.com"
    assert parsedate_to_datetime(message["Date"]) == NOW
    assert message["Message-ID"] == f"<{DELIVERY}@example.com>"
    assert message["X-Notifier-Delivery"] == DELIVERY
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = re.fullmatch(r"<(.+)>", message["List-Unsubscribe"])
    assert link is not None
    url = urlsplit(link.group(1))
    assert (url.scheme, url.netloc, url.path) == ("https", "notify.example.com", "/v1/unsubscribe")
    [token] = parse_qs(url.query)["token"]
    assert read_unsubscribe_token(token, SETTINGS, NOW) == "bo"
    # The link is sent as it is: never folded into RFC 2047 words a mail client cannot use.
    assert f"List-Unsubscribe: <{link.group(1)}>\r\n".encode() in received.raw
    assert all(len(line) <= 998 for line in received.raw.split(b"\r\n"))

    text, html = parts(message)
    for body in (text, html):
        assert "You have 5 new notifications" in body
        assert "ana and 3 others liked your photo" in body
        assert "cy mentioned you in a post" in body
        assert "And 3 more." in body
        assert "1 Mar 2025, 11:50 UTC" in body
    assert "https://app.example/photos/1?from=mail&x=1" in text
    assert link.group(1) in text
    assert '<a href="https://app.example/photos/1?from=mail&amp;x=1"' in html
    assert f'<a href="{link.group(1)}"' in html
    assert "Unsubscribe from these emails</a>" in html
    assert '<html lang="en">' in html
    assert "<img" not in html and "src=" not in html  # nothing fetched from elsewhere


async def test_one_group_is_the_subject(smtp: SmtpReceiver) -> None:
    settings = settings_for(smtp)
    await send_email(render_digest(digest(item("Zoë liked your photo")), settings, now=NOW),
                     settings.email)  # fmt: skip
    [received] = smtp.messages
    assert received.message["Subject"] == "Zoë liked your photo"
    text, html = parts(received.message)
    assert "You have a new notification" in text and "Zoë liked your photo" in text
    assert "Zoë liked your photo" in html


def test_a_retry_renders_the_same_message_id() -> None:
    first = render_digest(digest(), SETTINGS, now=NOW)
    retry = render_digest(digest(), SETTINGS, now=NOW + timedelta(hours=2))
    assert first["Message-ID"] == retry["Message-ID"] == f"<{DELIVERY}@localhost>"
    other = DigestData(**{**_fields(digest()), "delivery_id": "1" * 42})
    assert render_digest(other, SETTINGS, now=NOW)["Message-ID"] != first["Message-ID"]


def test_names_and_titles_are_escaped_in_html_and_plain_in_text() -> None:
    hostile = item('<script>alert("x")</script> liked "your" <b>photo</b> & more',
                   url='https://app.example/"><script>x</script>')  # fmt: skip
    message = render_digest(digest(hostile, item()), SETTINGS, now=NOW)
    text, html = parts(message)
    assert "<script>" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "&lt;b&gt;photo&lt;/b&gt; &amp; more" in html
    assert 'href="https://app.example/&#34;&gt;&lt;script&gt;x&lt;/script&gt;"' in html
    assert '<script>alert("x")</script> liked "your" <b>photo</b> & more' in text


def test_only_absolute_web_links_are_shown() -> None:
    links = [item("a", url="javascript:alert(1)"), item("b", url="/relative"),
             item("c", url="data:text/html,x"), item("d", url="https://ok.example/d")]  # fmt: skip
    text, html = parts(render_digest(digest(*links), SETTINGS, now=NOW))
    assert "javascript:" not in text + html and "data:" not in text + html
    assert "/relative" not in text + html
    assert html.count("<a href=") == 2  # the good link and the unsubscribe link


def test_a_long_single_subject_is_cut_and_header_safe() -> None:
    message = render_digest(digest(item("ana liked " + "a very long title " * 20)),
                            SETTINGS, now=NOW)  # fmt: skip
    subject = message["Subject"]
    assert len(subject) == 150 and subject.endswith("…")


def test_an_empty_digest_is_refused() -> None:
    empty = DigestData(**{**_fields(digest()), "items": [], "more": 2})
    with pytest.raises(ValueError, match="at least one"):
        render_digest(empty, SETTINGS, now=NOW)


def test_digest_item_from_a_group_keeps_only_an_absolute_web_url() -> None:
    def group(url: object) -> Group:
        newest = Activity(id="1" * 26, actor="ana", verb="like", object="like:1", time=NOW,
                          target="photo:1", extra={"url": url})  # fmt: skip
        return Group(
            id="g1", key="k", verb="like", activities=[newest], activity_count=3, actor_count=2,
            actors=["ana", "bo"], created_at=NOW, updated_at=NOW, position="2" * 26,
            is_seen=False, is_read=False, is_archived=False, category="social",
        )  # fmt: skip

    made = digest_item("notification", group("https://app.example/p/1"), VerbRegistry())
    assert made == DigestItem(
        feed="notification", group_id="g1", position="2" * 26, category="social", verb="like",
        summary="ana and 1 other liked your photo", actors=["ana", "bo"], activity_count=3,
        updated_at=NOW, url="https://app.example/p/1",
    )  # fmt: skip
    for bad in ("#/photos/1", "javascript:alert(1)", 42, None):
        assert digest_item("notification", group(bad), VerbRegistry()).url is None


# -- failures --------------------------------------------------------------------------------


async def _send_to(smtp: SmtpReceiver, **overrides: Any) -> EmailFailed:
    message = render_digest(digest(), SETTINGS, now=NOW)
    with pytest.raises(EmailFailed) as failed:
        await send_email(message, smtp.settings(**overrides))
    return failed.value


async def test_a_refused_recipient_is_permanent() -> None:
    with receiving(refuse_rcpt="550 5.1.1 no such user") as smtp:
        failed = await _send_to(smtp)
    assert failed.permanent
    assert "550" in failed.reason and "no such user" in failed.reason


async def test_a_recipient_refused_for_now_is_transient() -> None:
    with receiving(refuse_rcpt="451 4.7.1 greylisted, try again later") as smtp:
        failed = await _send_to(smtp)
    assert not failed.permanent
    assert "451" in failed.reason


async def test_a_refused_message_is_permanent_and_a_deferred_one_is_not() -> None:
    with receiving(refuse_data="554 5.7.1 message rejected as spam") as smtp:
        assert (await _send_to(smtp)).permanent
        smtp.refuse_data = "452 4.3.1 insufficient system storage"
        assert not (await _send_to(smtp)).permanent
        assert smtp.messages == []


async def test_nothing_listening_is_transient() -> None:
    failed = await _send_to(SmtpReceiver(port=free_port()))
    assert not failed.permanent


async def test_a_server_that_never_answers_times_out_as_transient() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read()  # says nothing, not even its greeting
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        started = asyncio.get_running_loop().time()
        failed = await _send_to(SmtpReceiver(port=port), timeout_s=0.3)
        assert asyncio.get_running_loop().time() - started < 3
    assert not failed.permanent
    assert "timed out" in failed.reason.lower()


# Plain-text AUTH on loopback: aiosmtpd warns (rightly, elsewhere) from its thread.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_a_login_is_sent_when_a_username_is_set() -> None:
    with receiving(logins={"notifier": "hunter2"}) as smtp:
        await send_email(render_digest(digest(), SETTINGS, now=NOW),
                         smtp.settings(username="notifier", password="hunter2"))  # fmt: skip
        assert [r.login for r in smtp.messages] == ["notifier"]
        wrong = await _send_to(smtp, username="notifier", password="wrong")
        assert not wrong.permanent  # our configuration, not this message: retry once fixed
        assert "535" in wrong.reason
        anonymous = await _send_to(smtp)
        assert not anonymous.permanent
    assert len(smtp.messages) == 1


def test_an_attempt_ends_within_the_lease_it_holds() -> None:
    for timeout_s in (0.5, 30, 300):
        settings = DeliverySettings(email=EmailSettings(timeout_s=timeout_s))
        assert settings.lease.total_seconds() > timeout_s * ATTEMPT_TIMEOUTS


# -- TLS -------------------------------------------------------------------------------------


@pytest.fixture
async def trusted(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ssl.SSLContext]:
    """The test certificate's server context, with clients trusting it (SSL_CERT_FILE)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    yield server_context(certificate)


async def test_starttls_upgrades_and_is_required(trusted: ssl.SSLContext) -> None:
    with receiving(starttls=trusted) as smtp:
        message = render_digest(digest(), SETTINGS, now=NOW)
        await send_email(message, smtp.settings(security="starttls"))
        assert [r.tls for r in smtp.messages] == [True]
        # "none" never upgrades: this server refuses mail before STARTTLS.
        assert not (await _send_to(smtp, security="none")).permanent
    with receiving() as plain:  # no STARTTLS offered: "starttls" does not fall back to plain
        assert not (await _send_to(plain, security="starttls")).permanent
        assert plain.messages == []


async def test_implicit_tls(trusted: ssl.SSLContext) -> None:
    with receiving(tls=trusted) as smtp:
        await send_email(render_digest(digest(), SETTINGS, now=NOW),
                         smtp.settings(security="tls"))  # fmt: skip
        assert [r.tls for r in smtp.messages] == [True]
        assert not (await _send_to(smtp, security="none", timeout_s=1)).permanent


async def test_an_untrusted_certificate_is_refused(certificate: tuple[Path, Path]) -> None:
    with receiving(tls=server_context(certificate)) as smtp:
        failed = await _send_to(smtp, security="tls")
    assert not failed.permanent
    assert smtp.messages == []


def _fields(data: DigestData) -> dict[str, Any]:
    return {f: getattr(data, f) for f in data.__struct_fields__}
