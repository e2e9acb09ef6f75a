"""Webhook signatures, as the Standard Webhooks specification has them (standardwebhooks.com).

Every delivery carries three headers::

    webhook-id: <delivery id>            the idempotency key: the same on every attempt
    webhook-timestamp: <unix seconds>    when this attempt was signed
    webhook-signature: v1,<base64>       HMAC-SHA256 of "<id>.<timestamp>.<body>"

The key is the endpoint's secret, ``whsec_`` followed by base64 of 24 random bytes; the HMAC
key is those bytes. A receiver recomputes the signature over the raw body, compares in
constant time, and refuses timestamps further than a few minutes from its clock (replays).
The format is a published standard, so receivers can verify with its libraries in many
languages as well as with the ten lines of ``verify`` (docs/delivery.md has them).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping

PREFIX = "whsec_"
#: How far a signature's timestamp may be from the receiver's clock.
TOLERANCE_S = 300


class BadSignature(ValueError):
    """A delivery's signature headers are missing, stale or wrong."""


def new_secret() -> str:
    """A fresh endpoint secret."""
    return PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of ``secret`` (ValueError if it is not ``whsec_`` + base64)."""
    if not secret.startswith(PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    if len(key) < 16:
        raise ValueError("a webhook secret holds at least 16 bytes")
    return key


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``msg_id.timestamp.body``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The signature headers of one attempt (and ``idempotency-key``, the same as the id,
    for receivers that know that header rather than the standard's)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id, timestamp, body),
        "idempotency-key": msg_id,
    }


def verify(secret: str, received: Mapping[str, str], body: bytes, now: float) -> str:
    """The delivery id of a correctly signed, fresh delivery; BadSignature otherwise.
    ``received``: the request's headers (lower-case names)."""
    try:
        msg_id = received["webhook-id"]
        timestamp = int(received["webhook-timestamp"])
        offered = received["webhook-signature"].split()
    except (KeyError, ValueError):
        raise BadSignature("missing or malformed webhook-* headers") from None
    if abs(now - timestamp) > TOLERANCE_S:
        raise BadSignature("timestamp too far from now")
    expected = signature(secret, msg_id, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
        raise BadSignature("no signature matches")
    return msg_id
