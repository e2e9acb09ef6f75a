"""Signed, expiring unsubscribe links: what a digest's ``List-Unsubscribe`` points to.

The link's token is the only credential ``/v1/unsubscribe`` asks for (a mail client's
one-click POST carries nothing else, RFC 8058), so it is signed and expires: a JWT (HS256)
with the user as ``sub``, ``aud`` ``notifier:unsubscribe`` and ``exp`` ``unsubscribe_ttl``
after the digest was rendered. The key is derived from NOTIFIER_SECRET for this purpose only
(HMAC-SHA256 of the secret over ``notifier unsubscribe``): a user token, signed with the
secret itself for another audience, is no unsubscribe token, and an unsubscribe token found
in a mailbox opens no feed.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import urlencode

import jwt
import msgspec

from notifier.delivery.settings import DeliverySettings
from notifier.errors import ConfigError, InvalidInput, NotifierError
from notifier.model import check_user_id
from notifier.preferences import ALL_CATEGORIES, Preferences

UNSUBSCRIBE_PATH = "/v1/unsubscribe"
AUDIENCE = "notifier:unsubscribe"
ALGORITHM = "HS256"
_PURPOSE = b"notifier unsubscribe"


class InvalidUnsubscribeToken(NotifierError):
    """The token is missing, malformed, forged, for another purpose, or expired; the message
    says which, in words for the person who clicked."""

    code = "invalid_token"


def unsubscribe_token(user: str, settings: DeliverySettings, now: datetime | None = None) -> str:
    """A token that unsubscribes ``user`` from email digests until ``now`` +
    ``settings.unsubscribe_ttl``. ConfigError without ``settings.secret``."""
    check_user_id(user, "user")
    now = now or datetime.now(UTC)
    claims = {
        "sub": user,
        "aud": AUDIENCE,
        "iat": int(now.timestamp()),
        "exp": int((now + settings.unsubscribe_ttl).timestamp()),
    }
    return jwt.encode(claims, _key(settings.secret), algorithm=ALGORITHM)


def unsubscribe_url(user: str, settings: DeliverySettings, now: datetime | None = None) -> str:
    """``{public_url}/v1/unsubscribe?token=...`` for ``user`` (see ``unsubscribe_token``)."""
    query = urlencode({"token": unsubscribe_token(user, settings, now)})
    return f"{settings.public_url.rstrip('/')}{UNSUBSCRIBE_PATH}?{query}"


def read_unsubscribe_token(
    token: str | None, settings: DeliverySettings, now: datetime | None = None
) -> str:
    """The user ``token`` unsubscribes, or InvalidUnsubscribeToken."""
    if not token:
        raise InvalidUnsubscribeToken("This link has no unsubscribe token.")
    if not settings.secret:
        raise InvalidUnsubscribeToken("This server does not sign unsubscribe links.")
    try:
        claims = jwt.decode(
            token,
            _key(settings.secret),
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            # Expiry is checked below against ``now`` (the caller's clock), not jwt's.
            options={"require": ["sub", "aud", "exp"], "verify_exp": False, "verify_iat": False},
        )
    except jwt.InvalidTokenError:
        raise InvalidUnsubscribeToken("This unsubscribe link is not valid.") from None
    expires = claims["exp"]
    if not isinstance(expires, int | float):
        raise InvalidUnsubscribeToken("This unsubscribe link is not valid.")
    if expires <= (now or datetime.now(UTC)).timestamp():
        raise InvalidUnsubscribeToken(
            "This unsubscribe link has expired. The latest email has one that works."
        )
    try:
        return check_user_id(claims["sub"], "sub")
    except InvalidInput:
        raise InvalidUnsubscribeToken("This unsubscribe link is not valid.") from None


def _key(secret: str) -> bytes:
    """The signing key of unsubscribe tokens, derived from ``secret`` for this use only."""
    if not secret:
        raise ConfigError("unsubscribe links need NOTIFIER_SECRET")
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def without_email(prefs: Preferences) -> Preferences:
    """``prefs`` with every email digest turned off (``channels["email"] = {"*"}``), all else
    kept: mutes, other channels, the address (the app may still use it)."""
    channels = {**prefs.channels, "email": frozenset({ALL_CATEGORIES})}
    return msgspec.structs.replace(prefs, channels=channels)
