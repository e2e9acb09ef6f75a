"""User notification preferences: what a user muted, and the rule that applies it.

A user mutes categories, verbs and actors. The rule is applied when writing, not when reading:
a muted activity never enters that user's notification feeds, so it is in none of their
counts, pages or realtime frames, and unmuting later does not bring it back (it was never
there). Flat and aggregated feeds (timelines) are not filtered: muting is about notifications.

Categories declared ``critical`` (notifier.categories) cannot be muted: the request is refused
(``muted.categories``), and an activity of a critical category is delivered whatever the user
muted, also when a mute was stored before the configuration made the category critical, and
also when the user muted its verb or its actor.

Preferences are decided here, without I/O (``check_preferences``, ``mutes``, ``receivers``);
storage keeps them (``Storage.preferences`` / ``put_preferences``) and the fanout manager reads
them once per chunk of users.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

import msgspec

from notifier.categories import Categories
from notifier.errors import InvalidInput
from notifier.model import Limits, VerbRegistry, check_user_id

_T = TypeVar("_T")


class Muted(msgspec.Struct, frozen=True, kw_only=True):
    """What a user muted. Sets: order carries no meaning, and membership is what fanout asks."""

    categories: frozenset[str] = frozenset()
    verbs: frozenset[str] = frozenset()
    actors: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.categories or self.verbs or self.actors)


#: In ``Preferences.channels``: every category (and uncategorised groups).
ALL_CATEGORIES = "*"


class Preferences(msgspec.Struct, frozen=True, kw_only=True):
    """A user's notification preferences (JSON: ``{"muted": {"categories": [...], ...},
    "channels": {"email": ["social"]}, "email": "bo@example.com"}``).

    The default value mutes nothing; storage keeps no record of it."""

    muted: Muted = Muted()
    channels: dict[str, frozenset[str]] = msgspec.field(default_factory=dict)
    """Delivery channel (``email``, ``webhook``) → the categories not delivered through it
    (``*``: none at all; notifier.delivery). Unlike in-app mutes these may name critical
    categories: the in-app feed still receives those, which is what critical guarantees."""
    email: str | None = None
    """Where email digests go; set through the server API only (the app knows addresses)."""

    @property
    def is_default(self) -> bool:
        """Whether this mutes nothing and holds no address (storage forgets such)."""
        return not self.muted and not any(self.channels.values()) and self.email is None

    def allows(self, channel: str, category: str | None) -> bool:
        """Whether a group of ``category`` may go out through ``channel`` for this user."""
        off = self.channels.get(channel)
        if not off:
            return True
        return ALL_CATEGORIES not in off and (category is None or category not in off)


_encoder = msgspec.json.Encoder(order="deterministic")
_decoder = msgspec.json.Decoder(Preferences)


def encode_preferences(prefs: Preferences) -> bytes:
    """The stored form (compact JSON, lists sorted so equal values encode alike)."""
    return _encoder.encode(prefs)


def decode_preferences(data: bytes | str) -> Preferences:
    """The inverse of ``encode_preferences``; unknown fields (a newer version's) are ignored."""
    return _decoder.decode(data)


def check_preferences(
    *,
    categories: Iterable[object],
    verbs: Iterable[object],
    actors: Iterable[object],
    known_categories: Categories,
    known_verbs: VerbRegistry,
    limits: Limits,
) -> Preferences:
    """Preferences from what a caller sent, or InvalidInput naming the field at fault
    (``muted.categories``, ``muted.verbs``, ``muted.actors``).

    Categories must be declared (when any are) and not critical; verbs must be registered;
    actors must be user ids; each list holds at most ``limits.max_muted`` distinct names.
    """
    muted_categories = _bounded(categories, "muted.categories", limits)
    for name in muted_categories:
        known_categories.check(name, "muted.categories")
        if known_categories.is_critical(name):
            raise InvalidInput(
                "muted.categories", f"category {name!r} is critical and cannot be muted"
            )
    muted_verbs = _bounded(verbs, "muted.verbs", limits)
    for name in muted_verbs:
        if name not in known_verbs:
            raise InvalidInput("muted.verbs", f"unknown verb {name!r}")
    muted_actors = _bounded(actors, "muted.actors", limits)
    for name in muted_actors:
        check_user_id(name, "muted.actors")
    return Preferences(
        muted=Muted(
            categories=frozenset(muted_categories),
            verbs=frozenset(muted_verbs),
            actors=frozenset(muted_actors),
        )
    )


#: Channels a user can turn categories off on (notifier.delivery.model.CHANNELS).
CHANNEL_NAMES = ("email", "webhook")
_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")


def check_channels(
    raw: Mapping[str, Iterable[object]], *, known_categories: Categories, limits: Limits
) -> dict[str, frozenset[str]]:
    """Channel mutes from what a caller sent, or InvalidInput naming ``channels.<name>``:
    known channels only, declared categories (or ``*``), at most ``limits.max_muted``."""
    found: dict[str, frozenset[str]] = {}
    for channel, values in raw.items():
        field = f"channels.{channel}"
        if channel not in CHANNEL_NAMES:
            raise InvalidInput("channels", f"unknown channel {channel!r}: one of {CHANNEL_NAMES}")
        names = _bounded(values, field, limits)
        for name in names:
            if name != ALL_CATEGORIES:
                known_categories.check(name, field)
        if names:
            found[channel] = frozenset(names)
    return found


def check_email(value: object) -> str | None:
    """An email address (or None), or InvalidInput on ``email``."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 254 or not _EMAIL.match(value):
        raise InvalidInput("email", "must be an email address (name@domain), at most 254 chars")
    return value


def _bounded(values: Iterable[object], field: str, limits: Limits) -> list[str]:
    """Distinct names, in order, at most ``limits.max_muted``."""
    if isinstance(values, str | bytes):
        raise InvalidInput(field, "must be a list of names")
    names: list[str] = []
    for value in values:
        if not isinstance(value, str):
            raise InvalidInput(field, "must be a list of strings")
        names.append(value)
    distinct = list(dict.fromkeys(names))
    if len(distinct) > limits.max_muted:
        raise InvalidInput(field, f"more than {limits.max_muted} names (limits.max_muted)")
    return distinct


class Subject(Protocol):
    """What the mute rule looks at: an ``Activity``, or anything with these three."""

    @property
    def actor(self) -> str: ...

    @property
    def verb(self) -> str: ...

    @property
    def category(self) -> str | None: ...


def mutes(activity: Subject, prefs: Preferences, categories: Categories) -> bool:
    """Whether ``prefs`` keep ``activity`` out of the user's notification feeds.

    An activity of a critical category is never muted, whatever is stored."""
    muted = prefs.muted
    if not muted or categories.is_critical(activity.category):
        return False
    return (
        activity.actor in muted.actors
        or activity.verb in muted.verbs
        or (activity.category is not None and activity.category in muted.categories)
    )


def receivers(
    users: Sequence[str],
    items: Sequence[_T],
    subjects: Sequence[Subject],
    prefs: Mapping[str, Preferences],
    categories: Categories,
) -> list[tuple[list[_T], list[str]]]:
    """``users`` grouped by the ``items`` each receives (``subjects[i]`` describes
    ``items[i]``): one storage write per group. Users muting nothing here share the first
    group, with every item, in their original order; users who receive nothing are left out.
    Without preferences for any of ``users`` this is ``[(items, users)]``."""
    everything: list[str] = []
    groups: dict[tuple[int, ...], list[str]] = {}
    for user in users:
        found = prefs.get(user)
        if found is None or not found.muted:
            everything.append(user)
            continue
        kept = tuple(i for i, s in enumerate(subjects) if not mutes(s, found, categories))
        if len(kept) == len(items):
            everything.append(user)
        elif kept:
            groups.setdefault(kept, []).append(user)
    out = [(list(items), everything)] if everything else []
    out += [([items[i] for i in kept], who) for kept, who in groups.items()]
    return out


__all__ = [
    "ALL_CATEGORIES",
    "CHANNEL_NAMES",
    "Muted",
    "Preferences",
    "Subject",
    "check_channels",
    "check_email",
    "check_preferences",
    "decode_preferences",
    "encode_preferences",
    "mutes",
    "receivers",
]
