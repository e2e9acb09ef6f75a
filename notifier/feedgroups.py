"""Feed groups: the named kinds of feed a deployment has, as its configuration declares them."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from notifier.aggregation import NOTIFICATION_RULE, RECENT_VERB_RULE, AggregationRule
from notifier.errors import ConfigError
from notifier.model import GROUP_NAME


class FeedKind(enum.StrEnum):
    """How a feed keeps what it is given."""

    FLAT = "flat"
    """Activity ids, newest first."""
    AGGREGATED = "aggregated"
    """Groups of activities by an aggregation rule, most recently updated first."""
    NOTIFICATION = "notification"
    """Aggregated, plus seen / read / archived state per group and exact unseen / unread counts."""


_BOUNDS = {
    "max_length": (1, 100_000),
    "max_activities": (1, 1_000),
    "merge_window": (1, 1_000),
}


@dataclass(frozen=True)
class FeedGroup:
    """One configured group of feeds (``timeline``, ``notification``…); a feed is group + user.

    ``max_length`` counts activities in flat feeds and groups in aggregated ones (as Stream
    Framework did); ``max_activities`` is how many of a group's newest activities a read returns
    (the counts still include all); ``merge_window`` is how many of the most recent groups a new
    activity may join before it starts a new group; ``fanout`` says whether followers' feeds of
    this group receive the activities of the users they follow.
    """

    name: str
    kind: FeedKind
    max_length: int = 100
    fanout: bool = False
    rule: AggregationRule | None = None
    max_activities: int = 15
    merge_window: int = 20

    def __post_init__(self) -> None:
        if not GROUP_NAME.match(self.name):
            raise ConfigError(f"feed group name {self.name!r} must match [a-z][a-z0-9_]*")
        for attr, (low, high) in _BOUNDS.items():
            value = getattr(self, attr)
            if not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"feeds.{self.name}.{attr} must be an integer {low}-{high}")
        if self.kind is FeedKind.FLAT:
            if self.rule is not None:
                raise ConfigError(f"feeds.{self.name}: a flat feed has no aggregation rule")
        elif self.rule is None:
            default = RECENT_VERB_RULE if self.kind is FeedKind.AGGREGATED else NOTIFICATION_RULE
            object.__setattr__(self, "rule", AggregationRule(default))

    @property
    def aggregated(self) -> bool:
        """Whether feeds of this group hold groups rather than single activities."""
        return self.kind is not FeedKind.FLAT


_GROUP_KEYS = {"kind", "max_length", "fanout", "rule", "max_activities", "merge_window"}


def group_from_mapping(name: str, raw: Mapping[str, Any]) -> FeedGroup:
    """Build a FeedGroup from a TOML table, with errors that name the offending key."""
    unknown = set(raw) - _GROUP_KEYS
    if unknown:
        raise ConfigError(f"feeds.{name}: unknown setting(s) {', '.join(sorted(unknown))}")
    try:
        kind = FeedKind(raw.get("kind", "flat"))
    except ValueError:
        raise ConfigError(
            f"feeds.{name}.kind must be one of flat, aggregated, notification"
        ) from None
    rule = raw.get("rule")
    if rule is not None and not isinstance(rule, str):
        raise ConfigError(f"feeds.{name}.rule must be a template string")
    fanout = raw.get("fanout", False)
    if not isinstance(fanout, bool):
        raise ConfigError(f"feeds.{name}.fanout must be true or false")
    return FeedGroup(
        name=name,
        kind=kind,
        max_length=raw.get("max_length", 100),
        fanout=fanout,
        rule=AggregationRule(rule) if rule is not None else None,
        max_activities=raw.get("max_activities", 15),
        merge_window=raw.get("merge_window", 20),
    )


def default_groups() -> list[FeedGroup]:
    """The groups a deployment has unless it configures its own.

    ``user``: each actor's own activities; ``timeline``: what the users one follows did;
    ``notification``: what others did to you (written with ``to``), aggregated per verb, target
    and day, with seen / read state.
    """
    return [
        FeedGroup("user", FeedKind.FLAT, max_length=1000),
        FeedGroup("timeline", FeedKind.FLAT, max_length=1000, fanout=True),
        FeedGroup("notification", FeedKind.NOTIFICATION, max_length=100),
    ]


@dataclass(frozen=True)
class FeedGroups:
    """The configured feed groups by name, and which one holds each actor's own activities."""

    groups: Mapping[str, FeedGroup] = field(default_factory=dict)
    actor_group: str = "user"

    @classmethod
    def of(cls, groups: Iterable[FeedGroup], actor_group: str = "user") -> FeedGroups:
        """Index ``groups`` by name, refusing duplicates and a missing actor group."""
        by_name: dict[str, FeedGroup] = {}
        for group in groups:
            if group.name in by_name:
                raise ConfigError(f"feed group {group.name!r} is declared twice")
            by_name[group.name] = group
        if actor_group not in by_name:
            raise ConfigError(f"actor feed group {actor_group!r} is not declared")
        if by_name[actor_group].kind is not FeedKind.FLAT:
            raise ConfigError(f"actor feed group {actor_group!r} must be flat")
        return cls(by_name, actor_group)

    def __getitem__(self, name: str) -> FeedGroup:
        return self.groups[name]

    def __contains__(self, name: object) -> bool:
        return name in self.groups

    def __iter__(self) -> Iterator[FeedGroup]:
        return iter(self.groups.values())

    @property
    def fanout_groups(self) -> list[FeedGroup]:
        """Groups whose feeds receive the activities of followed users."""
        return [group for group in self.groups.values() if group.fanout]
