"""The domain values: activities, verbs, the limits they obey, and the rules that check them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from notifier import ids
from notifier.categories import Categories
from notifier.errors import InvalidInput

#: User ids appear inside storage keys and channel names, so their alphabet is restricted.
#: ``{`` and ``}`` in particular are excluded: they would change Redis Cluster hash slots.
USER_ID = re.compile(r"^[A-Za-z0-9_.@=+-]{1,128}$")
#: Feed group names: lowercase identifiers.
GROUP_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Verb(msgspec.Struct, frozen=True):
    """A kind of action: its name as sent (``like``) and its display form (``liked``)."""

    name: str
    past_tense: str


DEFAULT_VERBS: tuple[Verb, ...] = (
    Verb("like", "liked"),
    Verb("comment", "commented on"),
    Verb("follow", "started following"),
    Verb("mention", "mentioned"),
    Verb("share", "shared"),
    Verb("pin", "pinned"),
    Verb("post", "posted"),
    Verb("reply", "replied to"),
    Verb("invite", "invited"),
    Verb("add", "added"),
)


class VerbRegistry:
    """The verbs a deployment accepts; an activity with an unregistered verb is rejected."""

    def __init__(self, verbs: Iterable[Verb] = DEFAULT_VERBS) -> None:
        self._verbs: dict[str, Verb] = {}
        for verb in verbs:
            self.register(verb)

    def register(self, verb: Verb) -> None:
        """Add or replace a verb (replacing changes only how it is displayed)."""
        if not re.match(r"^[a-z][a-z0-9_]{0,63}$", verb.name):
            raise InvalidInput("verb", f"verb name {verb.name!r} must match [a-z][a-z0-9_]*")
        if not verb.past_tense or len(verb.past_tense) > 64:
            raise InvalidInput("verb", f"past tense of {verb.name!r} must be 1-64 characters")
        self._verbs[verb.name] = verb

    def get(self, name: str) -> Verb:
        """The verb called ``name``; raises InvalidInput naming the field when unknown."""
        try:
            return self._verbs[name]
        except KeyError:
            raise InvalidInput("verb", f"unknown verb {name!r}; register it first") from None

    def __contains__(self, name: object) -> bool:
        return name in self._verbs

    def __iter__(self) -> Iterator[Verb]:
        return iter(self._verbs.values())


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Every size limit an activity obeys. All are configurable; the defaults are generous."""

    max_ref_length: int = 256
    """Longest ``object``, ``target`` or ``foreign_id`` (characters)."""
    max_extra_bytes: int = 16_384
    """Largest ``extra`` object, measured as compact JSON (bytes)."""
    max_extra_depth: int = 32
    """Deepest nesting of ``extra`` (the object itself is level 1)."""
    max_future_seconds: int = 600
    """Latest ``time`` accepted, past now (clock skew): a far-future activity would sit at
    the top of every feed it reaches."""
    max_past_days: int = 3_650
    """Earliest ``time`` accepted, before now (imports of history go this far back)."""
    max_to: int = 100
    """Most feeds one activity may be copied into with ``to``."""
    max_batch: int = 1_000
    """Most activities in one batch write."""
    max_muted: int = 500
    """Most names in each list of a user's muted categories, verbs and actors
    (notifier.preferences): fanout checks every activity against them."""
    max_actions: int = 2
    """Most action buttons (``extra.actions``) on one activity."""
    max_snooze_days: int = 365
    """Longest a notification may be snoozed."""


class Activity(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Something an actor did. Stored once by id; feeds hold only the id.

    ``id`` is assigned by notifier (see ``notifier.ids``); ``time`` is always aware UTC.
    """

    id: str
    actor: str
    verb: str
    object: str
    time: datetime
    target: str | None = None
    extra: dict[str, Any] = msgspec.field(default_factory=dict)
    foreign_id: str | None = None
    to: tuple[str, ...] = ()
    category: str | None = None
    """Its notification category (notifier.categories): given, or its verb's default."""
    expires_at: datetime | None = None
    """When it leaves every feed by itself (reads hide it from then on; a timer removes it)."""

    def expired(self, now: datetime) -> bool:
        """Whether ``expires_at`` has passed at ``now``."""
        return self.expires_at is not None and self.expires_at <= now


def split_feed_id(feed_id: str, field: str = "to") -> tuple[str, str]:
    """``"notifications:bo"`` → ``("notifications", "bo")``, or InvalidInput naming ``field``."""
    group, sep, user = feed_id.partition(":")
    if not sep or not GROUP_NAME.match(group) or not USER_ID.match(user):
        raise InvalidInput(field, f"{feed_id!r} is not a feed id of the form group:user_id")
    return group, user


def check_user_id(value: object, field: str) -> str:
    """A valid user id, or InvalidInput naming ``field``."""
    if not isinstance(value, str) or not USER_ID.match(value):
        raise InvalidInput(field, "must be 1-128 characters of A-Z a-z 0-9 _ . @ = + -")
    return value


def _check_ref(value: object, field: str, limits: Limits) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(field, "must be a non-empty string")
    if len(value) > limits.max_ref_length:
        raise InvalidInput(field, f"longer than {limits.max_ref_length} characters")
    if _CONTROL.search(value):
        raise InvalidInput(field, "must not contain control characters")
    return value


_json_encoder = msgspec.json.Encoder()


def new_activity(
    *,
    actor: str,
    verb: str,
    object: str,
    target: str | None = None,
    time: datetime | None = None,
    extra: Mapping[str, Any] | None = None,
    foreign_id: str | None = None,
    to: Sequence[str] = (),
    category: str | None = None,
    expires_at: datetime | None = None,
    verbs: VerbRegistry,
    limits: Limits,
    known_groups: Iterable[str] | None = None,
    categories: Categories | None = None,
) -> Activity:
    """Validate the parts of an activity and give it an id.

    Raises InvalidInput naming the first offending field. ``time`` defaults to now; a naive
    datetime is taken as UTC. With ``known_groups``, every ``to`` feed must name one of them.
    ``category`` defaults to the verb's (``categories``); ``expires_at`` must be in the future.
    """
    check_user_id(actor, "actor")
    verbs.get(verb)
    _check_ref(object, "object", limits)
    if target is not None:
        _check_ref(target, "target", limits)
    if foreign_id is not None:
        _check_ref(foreign_id, "foreign_id", limits)
    if time is None:
        time = datetime.now(UTC)
    elif not isinstance(time, datetime):
        raise InvalidInput("time", "must be a datetime")
    elif time.tzinfo is None:
        time = time.replace(tzinfo=UTC)
    else:
        time = time.astimezone(UTC)
    now = datetime.now(UTC)
    if time > now + timedelta(seconds=limits.max_future_seconds):
        raise InvalidInput(
            "time",
            f"more than {limits.max_future_seconds} s in the future (limits.max_future_seconds)",
        )
    if time < now - timedelta(days=limits.max_past_days):
        raise InvalidInput(
            "time", f"more than {limits.max_past_days} days in the past (limits.max_past_days)"
        )
    try:
        activity_id = ids.make_id(time, foreign_id)
    except ValueError:
        raise InvalidInput("time", "must be between 1970 and 4253") from None
    extra_dict = dict(extra or {})
    if not all(isinstance(key, str) for key in extra_dict):
        raise InvalidInput("extra", "keys must be strings")
    if _depth(extra_dict, limits.max_extra_depth) > limits.max_extra_depth:
        raise InvalidInput("extra", f"nested deeper than {limits.max_extra_depth} levels")
    try:
        size = len(_json_encoder.encode(extra_dict))
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInput("extra", f"must be JSON-serialisable ({exc})") from None
    if size > limits.max_extra_bytes:
        raise InvalidInput("extra", f"larger than {limits.max_extra_bytes} bytes as JSON")
    if "actions" in extra_dict:
        check_actions(extra_dict["actions"], limits.max_actions)
    if isinstance(to, str):
        raise InvalidInput("to", "must be a list of feed ids")
    if len(to) > limits.max_to:
        raise InvalidInput("to", f"more than {limits.max_to} feeds")
    groups = set(known_groups) if known_groups is not None else None
    for feed_id in to:
        group, _ = split_feed_id(feed_id)
        if groups is not None and group not in groups:
            raise InvalidInput("to", f"unknown feed group {group!r} in {feed_id!r}")
    resolved = (categories or Categories()).resolve(verb, category)
    if expires_at is not None:
        if not isinstance(expires_at, datetime):
            raise InvalidInput("expires_at", "must be a datetime")
        expires_at = (
            expires_at.replace(tzinfo=UTC) if expires_at.tzinfo is None
            else expires_at.astimezone(UTC)
        )  # fmt: skip
        if expires_at <= max(now, time):
            raise InvalidInput("expires_at", "must be later than now and than the activity's time")
    return Activity(
        id=activity_id,
        actor=actor,
        verb=verb,
        object=object,
        target=target,
        time=time,
        extra=extra_dict,
        foreign_id=foreign_id,
        to=tuple(dict.fromkeys(to)),
        category=resolved,
        expires_at=expires_at,
    )


_activity_encoder = msgspec.json.Encoder()
_activity_decoder = msgspec.json.Decoder(Activity)


def encode_activity(activity: Activity) -> bytes:
    """The stored form of an activity (compact JSON)."""
    return _activity_encoder.encode(activity)


def decode_activity(data: bytes | str) -> Activity:
    """The inverse of ``encode_activity``."""
    return _activity_decoder.decode(data)


_EVENT = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,63}$")
_ACTION_KEYS = {"label", "url", "event"}


def check_actions(actions: object, most: int) -> None:
    """``extra.actions``: at most ``most`` buttons, each a ``label`` and either a ``url``
    (http, https or a path: never ``javascript:``, which a widget would run on click) or an
    ``event`` name the page handles."""
    field = "extra.actions"
    if not isinstance(actions, list):
        raise InvalidInput(field, "must be a list of {label, url} or {label, event}")
    if len(actions) > most:
        raise InvalidInput(field, f"at most {most} actions (limits.max_actions)")
    for n, action in enumerate(actions):
        where = f"{field}[{n}]"
        if not isinstance(action, dict) or set(action) - _ACTION_KEYS:
            raise InvalidInput(where, "must be an object with label and one of url, event")
        label = action.get("label")
        if not isinstance(label, str) or not label.strip() or len(label) > 64:
            raise InvalidInput(f"{where}.label", "must be 1-64 characters")
        url, event = action.get("url"), action.get("event")
        if (url is None) == (event is None):
            raise InvalidInput(where, "give exactly one of url and event")
        if url is not None and (
            not isinstance(url, str)
            or len(url) > 2048
            or _CONTROL.search(url)
            or not (url.startswith(("https://", "http://", "/")) and not url.startswith("//"))
        ):
            raise InvalidInput(f"{where}.url", "must be an http(s) URL or a path starting with /")
        if event is not None and (not isinstance(event, str) or not _EVENT.match(event)):
            raise InvalidInput(f"{where}.event", "must match [A-Za-z][A-Za-z0-9_.:-]{0,63}")


def _depth(value: object, limit: int) -> int:
    """How deep ``value`` nests (a scalar is 0, ``{}`` 1), walked without recursion and no
    further than ``limit + 1`` levels: the JSON encoder recurses, and deep input made it raise
    RecursionError instead of a clear error."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(
            item, list | tuple) else None  # fmt: skip
        if children is None:
            continue
        deepest = max(deepest, depth)
        if depth > limit:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest
