"""``Notifier``: the entry point of the Python API, binding configuration to a storage backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from notifier.bodies import ActivityCache
from notifier.config import Config
from notifier.errors import InvalidInput
from notifier.feeds import AggregatedFeed, Feed, FlatFeed, NotificationFeed, open_feed
from notifier.model import Activity, new_activity
from notifier.storage.base import Storage
from notifier.storage.factory import storage_for

_F = TypeVar("_F", bound=Feed)


class Notifier:
    """Configuration plus storage: create activities and open feeds.

    >>> app = Notifier()                      # memory backend, default feed groups
    >>> like = app.activity(actor="ana", verb="like", object="photo:1")
    """

    def __init__(self, config: Config | None = None, storage: Storage | None = None) -> None:
        self.config = config or Config()
        self.storage = storage or storage_for(self.config)
        self.bodies = ActivityCache(self.storage)
        """Decoded activity bodies for page reads (immutable once stored; see bodies.py)."""

    def activity(
        self,
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
    ) -> Activity:
        """A validated activity with a fresh id; raises InvalidInput naming the bad field."""
        return new_activity(
            actor=actor,
            verb=verb,
            object=object,
            target=target,
            time=time,
            extra=extra,
            foreign_id=foreign_id,
            to=to,
            category=category,
            expires_at=expires_at,
            verbs=self.config.verbs,
            categories=self.config.categories,
            limits=self.config.limits,
            known_groups=self.config.feeds.groups,
        )

    def feed(self, group: str, user: str) -> Feed:
        """The ``group`` feed of ``user``; raises InvalidInput for an unknown group."""
        if group not in self.config.feeds:
            raise InvalidInput("feed_group", f"unknown feed group {group!r}")
        return open_feed(self.storage, self.config.feeds[group], user, self.bodies.get)

    def flat_feed(self, group: str, user: str) -> FlatFeed:
        """Like ``feed`` but typed, for groups known to be flat."""
        return _expect(self.feed(group, user), FlatFeed)

    def aggregated_feed(self, group: str, user: str) -> AggregatedFeed:
        """Like ``feed`` but typed, for aggregated (and notification) groups."""
        return _expect(self.feed(group, user), AggregatedFeed)

    def notification_feed(self, group: str, user: str) -> NotificationFeed:
        """Like ``feed`` but typed, for notification groups."""
        return _expect(self.feed(group, user), NotificationFeed)

    async def close(self) -> None:
        """Release the storage backend's connections."""
        await self.storage.close()


def _expect(feed: Feed, kind: type[_F]) -> _F:
    if not isinstance(feed, kind):
        raise InvalidInput("feed_group", f"{feed.group.name!r} is a {feed.group.kind} feed")
    return feed
