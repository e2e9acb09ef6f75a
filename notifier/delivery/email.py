"""Email digests: what one digest says (``DigestData``), the message it becomes
(``render_digest``, no I/O) and its sending over SMTP (``send_email``).

The escalation engine decides which groups go into a user's digest and freezes them as a
``DigestData`` in the delivery's payload; an attempt renders and sends it. Rendering depends
only on the data, the settings and the clock, so every attempt of a delivery sends the same
message with the same ``Message-ID`` (``<delivery id@sender's domain>``): a receiver that got
it once can drop the copy a retry sends after a lost reply.

Each message is ``multipart/alternative`` (plain text, then HTML) from
``templates/email/digest.txt`` and ``digest.html`` (HTML autoescaped: names and titles come
from activities), and carries the one-click unsubscribe of RFC 8058 (``List-Unsubscribe``
with a signed link, ``List-Unsubscribe-Post``) and ``Auto-Submitted: auto-generated`` (RFC
3834: vacation responders stay quiet). RFC 8058 also asks for a DKIM signature covering both
headers: that is the sending MTA's job (sign with ``h=`` including them).

``send_email`` tells the caller whether trying again can help (``EmailFailed.permanent``): a
5xx refusal of the sender, the recipient or the message is permanent; 4xx replies,
connection failures, timeouts and refusals of our own session (authentication, TLS) are not.
"""

from __future__ import annotations

import asyncio
import email.policy
import functools
import logging
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, parseaddr
from pathlib import Path
from urllib.parse import urlsplit

import aiosmtplib
import jinja2
import msgspec

from notifier.delivery.settings import DeliverySettings, EmailSettings
from notifier.delivery.summary import summary
from notifier.delivery.unsubscribe import unsubscribe_url
from notifier.errors import NotifierError
from notifier.feeds import Group
from notifier.model import VerbRegistry

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates" / "email"
"""``templates/email`` of the checkout notifier runs from (as the web pages' templates)."""
MAX_SUBJECT = 150
"""Characters of a one-item subject (a long title is cut with "…")."""
BODY_POLICY = email.policy.SMTP.clone(cte_type="7bit")
"""How a digest's parts are encoded: 7-bit (quoted-printable or base64 when not ASCII: any
server takes them, with or without 8BITMIME), lines of at most 78."""
POLICY = BODY_POLICY.clone(max_line_length=998)
"""How a digest is written out: headers folded only past RFC 5322's hard limit of 998. At
78, Python encodes a header it cannot fold (RFC 2047 ``=?utf-8?q?...?=``), and
``List-Unsubscribe`` is one long ``<URL>`` without a space to fold at: encoded, no mail
client finds the link. (Bodies are not affected: they were encoded under ``BODY_POLICY``.)"""
SESSION_REFUSED = 530
"""The reply to MAIL FROM of a server that wants a login or STARTTLS first."""
ATTEMPT_TIMEOUTS = 3
"""An attempt's whole deadline, in ``EmailSettings.timeout_s`` (which bounds each step:
connect, each command). ``DeliverySettings.lease`` counts on it."""


class DigestItem(msgspec.Struct, frozen=True, kw_only=True):
    """One group as a digest lists it, frozen when the digest was decided."""

    feed: str
    """The feed group it is in (``notification``)."""
    group_id: str
    position: str
    category: str | None
    verb: str
    summary: str
    """Its English text ("ana and 3 others liked your photo"; ``summary.summary``)."""
    actors: list[str]
    activity_count: int
    updated_at: datetime
    url: str | None = None
    """Where it opens (the newest activity's ``extra.url``), if that is an absolute http(s)
    URL: an email has no page to resolve a relative one against."""


class DigestData(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one digest email says; the payload of its delivery."""

    delivery_id: str
    user: str
    address: str
    window_start: datetime
    window_end: datetime
    items: list[DigestItem]
    more: int = 0
    """Pending groups beyond ``DigestSettings.max_groups``: counted, not listed."""

    @property
    def total(self) -> int:
        """Groups the digest is about, listed or not."""
        return len(self.items) + self.more


class EmailFailed(NotifierError):
    """An email was not accepted; ``permanent`` when sending it again cannot succeed."""

    code = "email_failed"

    def __init__(self, reason: str, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


def digest_item(feed: str, group: Group, verbs: VerbRegistry) -> DigestItem:
    """``group`` (of the ``feed`` feed group) as a digest lists it."""
    newest = group.activities[0] if group.activities else None
    url = newest.extra.get("url") if newest is not None else None
    return DigestItem(
        feed=feed,
        group_id=group.id,
        position=group.position,
        category=group.category,
        verb=group.verb,
        summary=summary(group, verbs),
        actors=list(group.actors),
        activity_count=group.activity_count,
        updated_at=group.updated_at,
        url=url if isinstance(url, str) and web_url(url) else None,
    )


def web_url(url: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL (the only links a digest shows)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def subject(data: DigestData) -> str:
    """The item's text for a digest of one group, else "5 new notifications"."""
    if data.total == 1 and data.items:
        text = " ".join(data.items[0].summary.split())
        return text if len(text) <= MAX_SUBJECT else text[: MAX_SUBJECT - 1].rstrip() + "…"
    return f"{data.total} new notification{'' if data.total == 1 else 's'}"


def when(time: datetime) -> str:
    """A time as a digest shows it: "1 Mar 2025, 14:05 UTC" (the reader's zone is unknown)."""
    at = time.astimezone(UTC)
    return f"{at.day} {at:%b %Y, %H:%M} UTC"


def message_id(delivery_id: str, sender: str) -> str:
    """``<delivery_id@domain>``, the domain of the sender's address (``localhost`` without)."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    return f"<{delivery_id}@{domain}>"


def render_digest(
    data: DigestData, settings: DeliverySettings, *, now: datetime | None = None
) -> EmailMessage:
    """The digest email of ``data``: text and HTML, headers for threading, unsubscribing and
    auto-responders (see the module docstring). ``now`` dates it and starts its unsubscribe
    link's lifetime. Raises ValueError for a digest with nothing in it."""
    if not data.items:
        raise ValueError("a digest lists at least one group")
    now = now or datetime.now(UTC)
    title = subject(data)
    unsubscribe = unsubscribe_url(data.user, settings, now)
    context = {
        "subject": title,
        "items": data.items,
        "more": data.more,
        "total": data.total,
        "unsubscribe_url": unsubscribe,
        "web_url": web_url,
        "when": when,
    }
    templates = _templates()
    message = EmailMessage(policy=BODY_POLICY)
    message["Subject"] = title
    message["From"] = settings.email.sender
    message["To"] = data.address
    message["Date"] = format_datetime(now.astimezone(UTC))
    message["Message-ID"] = message_id(data.delivery_id, settings.email.sender)
    message["List-Unsubscribe"] = f"<{unsubscribe}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["Auto-Submitted"] = "auto-generated"
    message["X-Notifier-Delivery"] = data.delivery_id
    message.set_content(templates.get_template("digest.txt").render(context))
    message.add_alternative(templates.get_template("digest.html").render(context), subtype="html")
    message.policy = POLICY
    return message


async def send_email(message: EmailMessage, settings: EmailSettings) -> None:
    """Hand ``message`` to the SMTP server of ``settings`` (envelope from its From and To),
    written as its own policy writes it (aiosmtplib would refold it at 78: see ``POLICY``).

    Each step may take ``timeout_s``, the whole attempt ``ATTEMPT_TIMEOUTS`` times that.
    Raises EmailFailed (``permanent`` or not, see the module docstring)."""
    sender = parseaddr(str(message.get("From", "")))[1]
    recipients = [a for _, a in getaddresses([str(v) for v in message.get_all("To", [])]) if a]
    raw = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    try:
        async with asyncio.timeout(settings.timeout_s * ATTEMPT_TIMEOUTS):
            await aiosmtplib.send(
                raw,
                sender=sender,
                recipients=recipients,
                hostname=settings.host,
                port=settings.port,
                username=settings.username or None,
                password=settings.password if settings.username else None,
                use_tls=settings.security == "tls",
                start_tls=settings.security == "starttls",
                timeout=settings.timeout_s,
            )
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        failed = email_failure(exc)
        log.info(
            "email not sent delivery=%s permanent=%s: %s",
            message.get("X-Notifier-Delivery", "-"),
            failed.permanent,
            failed.reason,
        )
        raise failed from exc
    log.info("email sent delivery=%s", message.get("X-Notifier-Delivery", "-"))


def email_failure(exc: BaseException) -> EmailFailed:
    """What a failure of ``aiosmtplib.send`` means for the delivery: permanent only for a 5xx
    refusal of the sender, the recipients or the message itself."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        said = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
        return EmailFailed(f"recipient refused: {said}", bool(codes) and min(codes) >= 500)
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        # 530: log in or STARTTLS first (RFC 4954, 3207): our session, not this message.
        permanent = exc.code >= 500 and exc.code != SESSION_REFUSED
        return EmailFailed(f"sender refused: {exc.code} {exc.message}", permanent)
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return EmailFailed(f"message refused: {exc.code} {exc.message}", exc.code >= 500)
    if isinstance(exc, aiosmtplib.SMTPResponseException):  # HELO, AUTH...: our session
        return EmailFailed(f"{type(exc).__name__}: {exc.code} {exc.message}", False)
    if isinstance(exc, TimeoutError):  # aiosmtplib's timeouts are TimeoutErrors too
        return EmailFailed(f"timed out: {exc}" if str(exc) else "timed out", False)
    return EmailFailed(f"{type(exc).__name__}: {exc}", False)


@functools.cache
def _templates() -> jinja2.Environment:
    """The digest templates (loaded once per process; HTML autoescaped, text not)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
