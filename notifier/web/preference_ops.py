"""Reading and replacing a user's notification preferences, shared by the client API (the
token's user) and the server API (any user)."""

from __future__ import annotations

import msgspec

from notifier.errors import InvalidInput
from notifier.preferences import Preferences, check_channels, check_email, check_preferences
from notifier.service import Notifier
from notifier.web.schemas import CategoryOut, MutedOut, PreferencesIn, PreferencesOut


def _out(notifier: Notifier, prefs: Preferences) -> PreferencesOut:
    muted = prefs.muted
    return PreferencesOut(
        muted=MutedOut(sorted(muted.categories), sorted(muted.verbs), sorted(muted.actors)),
        categories=[CategoryOut(c.name, c.critical) for c in notifier.config.categories],
        channels={name: sorted(off) for name, off in sorted(prefs.channels.items()) if off},
        email=prefs.email,
    )


async def stored(notifier: Notifier, user: str) -> Preferences:
    """``user``'s stored preferences (the default ones when none are stored)."""
    found = await notifier.storage.preferences([user])
    return found.get(user, Preferences())


async def read(notifier: Notifier, user: str) -> PreferencesOut:
    """``user``'s preferences (nothing muted when none are stored)."""
    return _out(notifier, await stored(notifier, user))


async def replace(
    notifier: Notifier, user: str, body: PreferencesIn, *, may_set_email: bool = True
) -> PreferencesOut:
    """Check and store ``body`` as ``user``'s preferences; InvalidInput names the field at
    fault (``muted.categories`` for a critical or unknown category, ``muted.verbs`` for an
    unregistered verb, ``muted.actors`` for a malformed user id, ``channels.<channel>``,
    ``email``, any list over the limit). ``channels`` and ``email`` left out keep the stored
    ones; only the server API sets ``email`` (``may_set_email``). Applies to activities
    written from now on; what a feed holds already stays."""
    config = notifier.config
    prefs = check_preferences(
        categories=body.muted.categories,
        verbs=body.muted.verbs,
        actors=body.muted.actors,
        known_categories=config.categories,
        known_verbs=config.verbs,
        limits=config.limits,
    )
    if body.email is not msgspec.UNSET and not may_set_email:
        raise InvalidInput("email", "the address is set by the app, through the server API")
    before = await stored(notifier, user)
    channels = before.channels
    if body.channels is not msgspec.UNSET:
        channels = check_channels(
            body.channels, known_categories=config.categories, limits=config.limits
        )
    email = before.email if body.email is msgspec.UNSET else check_email(body.email)
    prefs = msgspec.structs.replace(prefs, channels=channels, email=email)
    await notifier.storage.put_preferences(user, prefs)
    return _out(notifier, prefs)
