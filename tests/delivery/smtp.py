"""A real SMTP server for tests (aiosmtpd): it keeps what it receives, or refuses it with a
reply of the test's choosing; optionally with a login, STARTTLS or implicit TLS.

    async def test_x(smtp: SmtpReceiver) -> None:
        await send_email(message, smtp.settings())
        [received] = smtp.messages
        assert received.rcpts == ["bo@example.com"]

    with receiving(refuse_rcpt="550 5.1.1 no such user") as smtp: ...

The server runs in a thread of its own (aiosmtpd's ``Controller``) on 127.0.0.1 and a free
port. It answers a message only once it has kept it, so when ``send_email`` returns the
message is in ``messages``: no waiting.
"""

from __future__ import annotations

import email
import email.policy
import ssl
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from notifier.delivery.settings import EmailSettings
from tests.services import free_port, unavailable

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Received:
    """One message as the server got it: the envelope, the parsed message, its bytes, and
    whether it came over TLS and after which login."""

    mail_from: str
    rcpts: list[str]
    message: EmailMessage
    raw: bytes
    tls: bool
    login: str | None


@dataclass
class SmtpReceiver:
    """The server's behaviour and what it kept (shared with the server's thread)."""

    port: int
    refuse_rcpt: str | None = None
    """A reply to every RCPT TO instead of accepting it (``"550 5.1.1 no such user"``)."""
    refuse_data: str | None = None
    """A reply to the end of DATA instead of keeping the message."""
    logins: Mapping[str, str] | None = None
    """Users and passwords; when set, a message needs a login first."""
    host: str = HOST
    _messages: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def messages(self) -> list[Received]:
        """What was received, oldest first."""
        with self._lock:
            return list(self._messages)

    def settings(self, **overrides: Any) -> EmailSettings:
        """EmailSettings pointing at this server (plain SMTP, no login, short timeouts)."""
        base: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "security": "none",
            "sender": "Notifier <notifier@example.com>",
            "timeout_s": 5,
        }
        return EmailSettings(**(base | overrides))

    # aiosmtpd's hooks, called in the server's thread ----------------------------------------

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:  # fmt: skip
        if self.refuse_rcpt is not None:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse_data is not None:
            return self.refuse_data
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        login = session.auth_data.login.decode() if session.authenticated else None
        received = Received(
            str(envelope.mail_from), list(envelope.rcpt_tos), parsed, raw,
            tls=server.transport.get_extra_info("ssl_object") is not None, login=login,
        )  # fmt: skip
        with self._lock:
            self._messages.append(received)
        return "250 Message accepted"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        """aiosmtpd's ``authenticator``: the login must be one of ``logins``."""
        ok = (
            self.logins is not None
            and isinstance(data, LoginPassword)
            and self.logins.get(data.login.decode()) == data.password.decode()
        )
        # handled=False: aiosmtpd answers (235 or 535); True would leave the client waiting.
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


@contextmanager
def receiving(
    *, tls: ssl.SSLContext | None = None, starttls: ssl.SSLContext | None = None,
    **options: Any,
) -> Iterator[SmtpReceiver]:  # fmt: skip
    """A receiver on a free port of 127.0.0.1 while the block runs (``options``: its fields;
    ``tls``: implicit TLS with this server context, ``starttls``: STARTTLS required)."""
    receiver = SmtpReceiver(port=free_port(), **options)
    smtp_options: dict[str, Any] = {}
    if receiver.logins is not None:
        smtp_options |= {"authenticator": receiver.authenticate, "auth_required": True,
                         "auth_require_tls": False}  # fmt: skip
    if starttls is not None:
        smtp_options |= {"tls_context": starttls, "require_starttls": True}
    controller = Controller(
        receiver, hostname=receiver.host, port=receiver.port, ssl_context=tls, **smtp_options
    )
    controller.start()
    try:
        yield receiver
    finally:
        controller.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    """An SMTP server that accepts everything (see the module docstring)."""
    with receiving() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (made by ``openssl``); clients
    trust it through ``SSL_CERT_FILE``."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=localhost", "-addext", f"subjectAltName=IP:{HOST}",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    except FileNotFoundError:
        unavailable("openssl is not installed (it makes the test certificate)")
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """A server-side TLS context presenting ``certificate``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context
