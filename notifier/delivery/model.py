"""The values delivery speaks in: webhook endpoints, deliveries and how an attempt ended.

A ``Delivery`` is a decision: "this payload goes to this target", made once and stored before
anything is sent. Its id is the idempotency key, derived from what was decided (the group and
its position for a webhook, the user and window for a digest), so a worker that runs the same
decision again (a retry, a redelivered job after a crash) finds the stored one instead of
making a second. Sending is a separate step that may run more than once; receivers see the
same id every time (docs/delivery.md, "exactly once").
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Literal

import msgspec

from notifier import ids

Channel = Literal["webhook", "email"]
CHANNELS: tuple[Channel, ...] = ("webhook", "email")
Status = Literal["pending", "delivered", "dead"]
STATUSES: tuple[Status, ...] = ("pending", "delivered", "dead")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    """A webhook endpoint registered through the server API."""

    id: str
    url: str
    secret: str
    """Signs every delivery (``whsec_`` + base64, Standard Webhooks); shown once, on creation."""
    categories: frozenset[str] | None = None
    """The categories it receives; None: every category (and uncategorised groups)."""
    description: str = ""
    disabled: bool = False
    created_at: datetime

    def wants(self, category: str | None) -> bool:
        """Whether a group of ``category`` goes to this endpoint."""
        if self.disabled:
            return False
        return self.categories is None or (category is not None and category in self.categories)


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One decided delivery and how far it got."""

    id: str
    """The idempotency key (``delivery_id``): 42 hex digits, time-ordered (see ``make_id``)."""
    channel: Channel
    target: str
    """Where it goes: the endpoint id of a webhook, the user of an email digest."""
    scope: str
    """The unit a claim is atomic in, with its marks: the user for a digest (the marks are
    that user's groups), the delivery's own id for a webhook."""
    user: str
    payload: bytes
    """What is sent, frozen when decided: the webhook's JSON body, the digest's JSON data."""
    created_at: datetime
    status: Status = "pending"
    attempts: int = 0
    """Attempts started (a replay keeps counting)."""
    lease_until: datetime = EPOCH
    """While an attempt runs: no other attempt starts before this (``DeliveryStore.begin``)."""
    last_error: str = ""
    updated_at: datetime | None = None
    delivered_at: datetime | None = None


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """How one attempt ended: delivered, failed (pending again, a retry follows) or dead."""

    status: Status
    at: datetime
    error: str = ""


def make_id(time_key: str, *parts: str) -> str:
    """A delivery id: ``time_key`` (an activity id, 26 hex digits: ids sort by time) then 16
    hex digits of a hash of ``parts`` (what the decision is about)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]
    return f"{time_key}{digest}"


def window_key(start: datetime) -> str:
    """The time key of a digest window starting at ``start`` (an id-shaped 26 hex digits)."""
    return f"{ids.micros(start):014x}{0:012x}"


_encoder = msgspec.json.Encoder(order="deterministic")
_delivery = msgspec.json.Decoder(Delivery)
_endpoint = msgspec.json.Decoder(Endpoint)


def encode(value: Delivery | Endpoint) -> bytes:
    """The stored form of a delivery or an endpoint (JSON)."""
    return _encoder.encode(value)


def decode_delivery(data: bytes | str) -> Delivery:
    return _delivery.decode(data)


def decode_endpoint(data: bytes | str) -> Endpoint:
    return _endpoint.decode(data)
