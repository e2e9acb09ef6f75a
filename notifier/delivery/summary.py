"""``summary``: a group's text in English, as the widget shows it ("ana and 3 others liked
your photo"), for the places without the widget: email subjects and bodies, logs.

The rules are the widget's (``describe`` and ``targetText`` in static/notifier-items.js, its
English strings in static/notifier-i18n.js), so a digest reads like the bell:

- actors: the distinct names of the group's activities, newest first, each its
  ``extra.actor_name`` or else its actor id; with ``actor_count`` of 1 "ana", of 2 "ana and
  bo", of more "ana and 3 others" (counted by ``actor_count``, not by the names at hand);
- verb: its past tense (``Verb.past_tense``: the widget's English templates say the same
  words for the default verbs);
- target, from the newest activity: its ``extra.title`` (the ``en`` one of a title per
  language), or a phrase from the type of its ``target`` ("photo:1" gives "your photo",
  "user:bo" gives "you") or, without a target, of its ``object`` ("a photo"), or
  "something"; raw ids never show.

Two differences, both where the widget has less to go on: a verb the widget has no English
template for reads "ana: approve a request" there and "ana approved a request" here (the
server knows every registered verb's past tense); and a group whose activity bodies are gone
names its ``actors`` here where the widget shows "?".

Whitespace runs (a newline in an actor's name) become one space, as they do on the page: the
text also goes into an email's Subject header, where a line break is not allowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from notifier.feeds import Group
from notifier.model import Activity, VerbRegistry

#: The widget's English ``things``: an own target of this type is said as this word.
THINGS = {"user": "you"}
UNKNOWN_ACTOR = "?"
LOCALE = "en"


def summary(group: Group, verbs: VerbRegistry) -> str:
    """The English text of ``group`` ("ana and 3 others liked your photo")."""
    names = actor_names(group.activities) or list(dict.fromkeys(group.actors))
    actors = actors_phrase(names, group.actor_count)
    newest = group.activities[0] if group.activities else None
    target = target_phrase(newest)
    if group.verb in verbs:
        text = f"{actors} {verbs.get(group.verb).past_tense} {target}"
    else:  # the widget's fallback (s.verb): a verb nobody registered
        text = f"{actors}: {group.verb} {target}"
    return " ".join(text.split())


def actor_names(activities: Sequence[Activity]) -> list[str]:
    """Distinct display names of ``activities``' actors, in their order (newest first): each
    ``extra.actor_name`` when it is text, else the actor id."""
    names: dict[str, None] = {}
    for activity in activities:
        shown = activity.extra.get("actor_name")
        names[shown if isinstance(shown, str) else activity.actor] = None
    return list(names)


def actors_phrase(names: Sequence[str], actor_count: int) -> str:
    """The actors in words: "ana", "ana and bo" or "ana and 3 others". ``names`` newest first;
    ``actor_count`` the group's number of distinct actors (it may count more than ``names``
    holds)."""
    count = max(actor_count, 1)
    if count == 1 or not names:
        return names[0] if names else UNKNOWN_ACTOR
    if count == 2 and len(names) >= 2:
        return f"{names[0]} and {names[1]}"
    others = count - 1
    return f"{names[0]} and {others} {'other' if others == 1 else 'others'}"


def target_phrase(activity: Activity | None) -> str:
    """What ``activity`` was done to, in words (see the module docstring); "something" when
    nothing tells (also for no activity)."""
    if activity is None:
        return "something"
    title = localised(activity.extra.get("title"))
    if title:
        return title
    own = bool(activity.target)
    ref = activity.target if own and activity.target else activity.object
    kind = ref.partition(":")[0] if ":" in ref else ""
    if not kind:
        return "something"
    if own and kind in THINGS:
        return THINGS[kind]
    thing = re.sub(r"[_-]+", " ", kind)
    return f"your {thing}" if own else f"a {thing}"


def localised(value: Any) -> str | None:
    """A title given as text, or per language (``{"en": ..., "fr": ...}``: English, else the
    first one); None when there is no text."""
    if isinstance(value, Mapping):
        chosen = value.get(LOCALE)
        if chosen is None:
            chosen = next(iter(value.values()), None)
        value = chosen
    return value if isinstance(value, str) and value else None
