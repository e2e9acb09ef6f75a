"""notifier: a realtime notification and activity-feed server.

The Python API in brief::

    from notifier import Notifier
    app = Notifier()
    like = app.activity(actor="ana", verb="like", object="photo:1", target="photo:1")
    await app.feed("notification", "bo").add(like)
"""

from notifier.aggregation import NOTIFICATION_RULE, RECENT_VERB_RULE, AggregationRule
from notifier.config import Config
from notifier.errors import ConfigError, InvalidInput, NotFound, NotifierError
from notifier.fanout.manager import Manager
from notifier.feedgroups import FeedGroup, FeedGroups, FeedKind
from notifier.feeds import AggregatedFeed, FlatFeed, Group, GroupPage, NotificationFeed
from notifier.model import Activity, Limits, Verb, VerbRegistry
from notifier.service import Notifier
from notifier.storage.base import Counts

__all__ = [
    "NOTIFICATION_RULE",
    "RECENT_VERB_RULE",
    "Activity",
    "AggregatedFeed",
    "AggregationRule",
    "Config",
    "ConfigError",
    "Counts",
    "FeedGroup",
    "FeedGroups",
    "FeedKind",
    "FlatFeed",
    "Group",
    "GroupPage",
    "InvalidInput",
    "Limits",
    "Manager",
    "NotFound",
    "NotificationFeed",
    "Notifier",
    "NotifierError",
    "Verb",
    "VerbRegistry",
]
