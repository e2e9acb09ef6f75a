"""Activity ids: unique, time-ordered strings that sort the same as text, in Redis and in CQL.

An id is 26 lowercase hex digits: 14 for the activity time in microseconds since the epoch
(enough until the year 4253) and 12 for a suffix. Fixed width makes string order equal time
order, so feeds can keep ids as sorted-set members in lexical order (no float scores, no two
ids that compare equal) and cursors are exact. With a ``foreign_id`` the suffix is a hash of
it, so re-sending the same (foreign_id, time) yields the same id and the write is idempotent.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta

ID_LENGTH = 26
_TIME_DIGITS = 14
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_MICROS = 16**_TIME_DIGITS - 1
ID_PATTERN = re.compile(r"^[0-9a-f]{26}$")


def micros(time: datetime) -> int:
    """Microseconds since the epoch of an aware (or naive UTC) datetime."""
    if time.tzinfo is None:
        time = time.replace(tzinfo=UTC)
    delta = time - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def make_id(time: datetime, foreign_id: str | None = None) -> str:
    """A new activity id for ``time``; deterministic when ``foreign_id`` is given."""
    us = micros(time)
    if not 0 <= us <= _MAX_MICROS:
        raise ValueError("time out of range for an activity id")
    if foreign_id is None:
        suffix = secrets.token_hex(6)
    else:
        suffix = hashlib.blake2b(foreign_id.encode(), digest_size=6).hexdigest()
    return f"{us:014x}{suffix}"


@functools.lru_cache(maxsize=4_096)
def id_time(activity_id: str) -> datetime:
    """The time encoded in an activity id (UTC, microsecond precision). Cached: every page
    read turns each group's positions into times, and popular groups are read again and
    again. The cache is small on purpose (~0.9 MB): at 65,536 entries it held 14 MB, and
    took a web process hours of new activities to fill, its RSS growing all the while."""
    return _EPOCH + timedelta(microseconds=int(activity_id[:_TIME_DIGITS], 16))


def is_id(value: str) -> bool:
    """Whether ``value`` has the shape of an activity id."""
    return bool(ID_PATTERN.match(value))
