"""What the handlers work with, built once per process by ``create_app``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from notifier.errors import NotFound
from notifier.fanout.manager import Manager
from notifier.feedgroups import FeedGroup
from notifier.feeds import Feed
from notifier.realtime.bus import Bus, NullBus
from notifier.realtime.server import RealtimeServer
from notifier.service import Notifier
from notifier.web.activity import ActiveUsers
from notifier.web.auth import UserTokens
from notifier.web.settings import ServerSettings
from notifier.web.shared_limits import Limits


@dataclass
class Services:
    """The process's notifier, fanout manager, token signer, settings, realtime side and
    limits."""

    notifier: Notifier
    fanout: Manager
    tokens: UserTokens
    settings: ServerSettings
    realtime: RealtimeServer
    active: ActiveUsers
    """Where reads and websocket connections record their user as active (fanout priority)."""
    limits: Limits
    """Rate limits and the connection cap, shared by every web process on the same Redis."""
    bus: Bus = field(default_factory=NullBus)
    """Where this process announces its own writes (marks; fanout publishes through its
    manager, which holds the same bus)."""
    broker_ping: Callable[[], Awaitable[None]] | None = None

    def group(self, name: str) -> FeedGroup:
        """A configured feed group, or 404."""
        if name not in self.notifier.config.feeds:
            raise NotFound(f"unknown feed group {name!r}", field="group")
        return self.notifier.config.feeds[name]

    def feed(self, group: str, user: str) -> Feed:
        """The feed object, after checking the group exists (404) and the user id (422)."""
        self.group(group)
        return self.notifier.feed(group, user)
