"""Reading and replacing a user's notification preferences, shared by the client API (the
token's user) and the server API (any user)."""

from __future__ import annotations

from notifier.preferences import Preferences, check_preferences
from notifier.service import Notifier
from notifier.web.schemas import CategoryOut, MutedOut, PreferencesIn, PreferencesOut


def _out(notifier: Notifier, prefs: Preferences) -> PreferencesOut:
    muted = prefs.muted
    return PreferencesOut(
        muted=MutedOut(sorted(muted.categories), sorted(muted.verbs), sorted(muted.actors)),
        categories=[CategoryOut(c.name, c.critical) for c in notifier.config.categories],
    )


async def read(notifier: Notifier, user: str) -> PreferencesOut:
    """``user``'s preferences (nothing muted when none are stored)."""
    found = await notifier.storage.preferences([user])
    return _out(notifier, found.get(user, Preferences()))


async def replace(notifier: Notifier, user: str, body: PreferencesIn) -> PreferencesOut:
    """Check and store ``body`` as ``user``'s preferences; InvalidInput names the field at
    fault (``muted.categories`` for a critical or unknown category, ``muted.verbs`` for an
    unregistered verb, ``muted.actors`` for a malformed user id, any list over the limit).
    Applies to activities written from now on; what a feed holds already stays."""
    config = notifier.config
    prefs = check_preferences(
        categories=body.muted.categories,
        verbs=body.muted.verbs,
        actors=body.muted.actors,
        known_categories=config.categories,
        known_verbs=config.verbs,
        limits=config.limits,
    )
    await notifier.storage.put_preferences(user, prefs)
    return _out(notifier, prefs)
