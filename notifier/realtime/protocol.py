"""The websocket protocol: messages a client sends, frames the server sends, close codes.

Every message is one JSON text frame with a ``type``. docs/realtime.md is the prose version of
this module; a test keeps the two in step (every type and close code here is documented there).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from notifier.feeds import Group
from notifier.model import Activity
from notifier.storage.base import Counts

SUBPROTOCOL = "notifier.v1"
TOKEN_PROTOCOL_PREFIX = "bearer."
"""A browser that cannot send a first message early may offer ``bearer.<token>`` as a
subprotocol next to ``notifier.v1``; the server answers ``notifier.v1``, never the token."""


class CloseCode:
    """Close codes (RFC 6455 private range 4000-4999, plus the standard 1009 / 1001)."""

    BAD_MESSAGE = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    NOT_FOUND = 4404
    TIMEOUT = 4408
    TOO_MANY_CONNECTIONS = 4409
    TOO_SLOW = 4429
    TOO_BIG = 1009
    TRY_AGAIN_LATER = 1013
    INTERNAL_ERROR = 1011


Cursor = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{26}$")]
Floor = Annotated[str, msgspec.Meta(pattern="^([0-9a-f]{26})?$")]
"""An ``oldest`` bound: a position, or empty for "everything" (the client holds the whole feed)."""
FeedName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class _In(msgspec.Struct, forbid_unknown_fields=True, tag_field="type"):
    pass


class Auth(_In, tag="auth"):
    """First message (unless the token came as a subprotocol): the user token."""

    token: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class Subscribe(_In, tag="subscribe"):
    """Listen to one feed. Without ``position``: the first ``limit`` items (0 = counts only).
    With ``position`` (the newest position seen) and ``oldest`` (the oldest item held): the
    current state of everything from the top down to ``oldest`` (a resume). With ``position``
    alone: only what is newer."""

    feed: FeedName
    position: Cursor | None = None
    oldest: Floor | None = None
    limit: Annotated[int, msgspec.Meta(ge=0, le=100)] = 25


class Window(_In, tag="window"):
    """The client now holds items down to ``oldest`` (after loading older pages over HTTP):
    later syncs cover them too."""

    feed: FeedName
    oldest: Floor


class Unsubscribe(_In, tag="unsubscribe"):
    """Stop listening to one feed."""

    feed: FeedName


class Ping(_In, tag="ping"):
    """Keeps the connection from the idle timeout; answered with ``pong``."""


ClientMessage = Auth | Subscribe | Window | Unsubscribe | Ping


class _Out(msgspec.Struct, omit_defaults=True, tag_field="type"):
    pass


class FeedInfo(msgspec.Struct):
    """What a client must know of a feed group to keep its copy exact."""

    kind: str
    """``flat``, ``aggregated`` or ``notification``."""
    max_length: int
    """The feed keeps its newest ``max_length`` items: after applying a frame, a client keeps
    only that many (the items an addition trimmed away in storage leave the client too)."""


class Welcome(_Out, tag="welcome"):
    """Authenticated: who, until when, the limits the client must respect, and the feeds."""

    user: str
    expires: int
    """Epoch seconds when the token expires: the server closes with 4401 then."""
    idle_timeout: float
    """Send something (a ``ping``) at least this often, seconds."""
    resume_limit: int
    max_message_bytes: int
    feeds: dict[str, FeedInfo] = msgspec.field(default_factory=dict)
    """The feed groups this token may subscribe to."""


class Update(_Out, tag="update"):
    """New or updated items (newest first), merged by id into what the client holds."""

    feed: str
    position: str | None
    groups: list[Group] | None = None
    activities: list[Activity] | None = None
    counts: Counts | None = None


class Sync(_Out, tag="sync"):
    """The exact state of every item whose position is at least ``oldest`` (all items when
    ``oldest`` is empty): the client replaces that range. ``new`` lists the ids that are
    newer than the position the client resumed from."""

    feed: str
    position: str | None
    oldest: str
    groups: list[Group] | None = None
    activities: list[Activity] | None = None
    counts: Counts | None = None
    new: list[str] = msgspec.field(default_factory=list)


class Removed(_Out, tag="removed"):
    """Activities taken out of a flat feed."""

    feed: str
    activity_ids: list[str]
    position: str | None = None


class CountsFrame(_Out, tag="counts"):
    """New absolute unseen / unread counts (a client that holds no items gets only these)."""

    feed: str
    counts: Counts
    position: str | None = None


class Refetch(_Out, tag="refetch"):
    """Too much changed to replay: read the first page again (or subscribe without position)."""

    feed: str
    reason: str
    counts: Counts | None = None


class Pong(_Out, tag="pong"):
    """Answer to ``ping``."""


ServerFrame = Welcome | Update | Sync | Removed | CountsFrame | Refetch | Pong

_decoder = msgspec.json.Decoder(ClientMessage)
_encoder = msgspec.json.Encoder()


def parse(text: str) -> ClientMessage:
    """A client message; msgspec.ValidationError / DecodeError name what is wrong."""
    message: ClientMessage = _decoder.decode(text)
    return message


def encode(frame: ServerFrame) -> str:
    """The text of one frame."""
    return _encoder.encode(frame).decode()
