"""A reference model of notifier, written from its docs, not from its code.

docs/concepts.md: activities (ids sort by time; the server assigns them, so the model learns
each id from the POST response), flat feeds (newest first, trimmed to ``max_length`` on every
add), aggregated and notification feeds (a rule renders each activity's group key; a new
activity joins the most recent group with its key among the ``merge_window`` most recent
groups, or opens a group whose id is its own; ``max_activities`` shown, exact
``activity_count`` / ``actor_count``; position = the newest activity's id; trimmed to
``max_length`` groups), seen / read / archived flags and exact counts, and removal.
docs/api.md and docs/fanout.md: ``to`` feeds, fanout to followers' fanout feeds, follow with
backfill (the target's newest N activities of its own feed), unfollow (removes what the
target's own feed still holds, unless ``keep_history``), removal from every feed it reached.

The model is exact for one order of operations per feed; the driver makes that order known
(see world.py): writes to one notification feed are serialised, and flat fanout feeds only
see adds, or only removals, between two quiet points, where the order does not matter.

Nothing here imports notifier.
"""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Json = dict[str, Any]


def parse_time(text: str) -> datetime:
    """An RFC 3339 time as the API writes it (``…Z``)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Act:
    """An activity as stored: what the driver sent, plus the id the server gave it."""

    id: str
    actor: str
    verb: str
    object: str
    time: datetime
    target: str | None = None
    extra: Json = field(default_factory=dict)
    foreign_id: str | None = None
    to: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, body: Json) -> Act:
        return cls(
            id=body["id"],
            actor=body["actor"],
            verb=body["verb"],
            object=body["object"],
            time=parse_time(body["time"]),
            target=body.get("target"),
            extra=dict(body.get("extra") or {}),
            foreign_id=body.get("foreign_id"),
            to=tuple(body.get("to") or ()),
        )

    def same_content(self, sent: Json) -> bool:
        """Whether this is the activity ``sent`` (a POST body) describes."""
        return (self.actor, self.verb, self.object, self.target, self.foreign_id) == (
            sent["actor"], sent["verb"], sent["object"], sent.get("target"),
            sent.get("foreign_id"),
        ) and self.time == parse_time(sent["time"]) and self.extra == sent.get("extra", {}) and (
            self.to == tuple(dict.fromkeys(sent.get("to", [])))
        )  # fmt: skip

    def summary(self) -> tuple[Any, ...]:
        """What must agree between the model and a body the API returns."""
        return (self.id, self.actor, self.verb, self.object, self.target, self.time,
                json.dumps(self.extra, sort_keys=True), self.foreign_id, self.to)  # fmt: skip


def activity_summary(body: Json) -> tuple[Any, ...]:
    """``Act.summary`` of an activity body as the API returns it."""
    return Act.from_json(body).summary()


@dataclass(frozen=True)
class FeedSpec:
    """A feed group as configured (the same numbers go into the servers' TOML)."""

    name: str
    kind: str  # flat | aggregated | notification
    max_length: int
    fanout: bool = False
    max_activities: int = 15
    merge_window: int = 20
    rule: Callable[[Act], str] | None = None
    rule_template: str | None = None
    modelled: bool = True
    """False for a feed whose state depends on the order fanout jobs run (only client vs HTTP
    is compared for it)."""

    @property
    def aggregated(self) -> bool:
        return self.kind != "flat"


def notification_rule(a: Act) -> str:
    """The documented default notification rule: verb + target (or object) + UTC day."""
    return f"{a.verb}:{a.target or a.object}:{a.time.strftime('%Y-%m-%d')}"


# -- flat feeds ------------------------------------------------------------------------------
class FlatModel:
    """Activity ids, newest first, trimmed to ``max_length`` on every add."""

    def __init__(self, spec: FeedSpec) -> None:
        self.spec = spec
        self.ids: list[str] = []  # ascending
        self.trimmed: set[str] = set()
        self.readded: list[str] = []
        """Ids added again after a trim dropped them, that stayed (see ``Model.notes``)."""

    def add(self, ids: Iterable[str]) -> None:
        for activity_id in ids:
            at = bisect.bisect_left(self.ids, activity_id)
            if at == len(self.ids) or self.ids[at] != activity_id:
                self.ids.insert(at, activity_id)
            if len(self.ids) > self.spec.max_length:
                cut = len(self.ids) - self.spec.max_length
                self.trimmed.update(self.ids[:cut])
                del self.ids[:cut]
            if activity_id in self.trimmed and activity_id in self.ids:
                self.trimmed.discard(activity_id)
                self.readded.append(activity_id)

    def remove(self, ids: Iterable[str]) -> None:
        gone = set(ids)
        self.ids = [i for i in self.ids if i not in gone]
        self.trimmed -= gone

    def adopt(self, ids: Iterable[str]) -> None:
        """Take back ids a trim dropped that the server kept (Cassandra's overshoot): as in
        storage, they stay until the next add trims the feed again."""
        for activity_id in ids:
            self.trimmed.discard(activity_id)
            bisect.insort(self.ids, activity_id)

    def newest(self) -> list[str]:
        return self.ids[::-1]


# -- aggregated and notification feeds -------------------------------------------------------
@dataclass
class GroupModel:
    id: str
    key: str
    verb: str
    members: list[str] = field(default_factory=list)  # ascending ids
    actors: dict[str, str] = field(default_factory=dict)  # activity id -> actor
    seen: bool = False
    read: bool = False
    archived: bool = False
    done: bool = False
    snoozed: bool = False
    """Snoozed until a far time (the e2e never waits for a wake): archived meanwhile."""

    @property
    def position(self) -> str:
        return self.members[-1]

    def view(self, spec: FeedSpec, acts: dict[str, Act]) -> Json:
        """The group as the API must show it (activities as summaries, times parsed)."""
        shown = self.members[::-1][: spec.max_activities]
        return {
            "id": self.id,
            "key": self.key,
            "verb": self.verb,
            "activities": [acts[i].summary() for i in shown],
            "activity_count": len(self.members),
            "actor_count": len(set(self.actors.values())),
            "actors": list(dict.fromkeys(self.actors[i] for i in shown)),
            "created_at": acts[self.members[0]].time,
            "updated_at": acts[self.members[-1]].time,
            "position": self.position,
            "is_seen": self.seen,
            "is_read": self.read,
            "is_archived": self.archived,
            "is_done": self.done,
            "snoozed": self.snoozed and self.archived,
        }


def group_view(body: Json) -> Json:
    """``GroupModel.view`` of a group body as the API returns it."""
    return {
        "id": body["id"],
        "key": body["key"],
        "verb": body["verb"],
        "activities": [activity_summary(a) for a in body["activities"]],
        "activity_count": body["activity_count"],
        "actor_count": body["actor_count"],
        "actors": body["actors"],
        "created_at": parse_time(body["created_at"]),
        "updated_at": parse_time(body["updated_at"]),
        "position": body["position"],
        "is_seen": body["is_seen"],
        "is_read": body["is_read"],
        "is_archived": body["is_archived"],
        "is_done": body.get("is_done", False),
        "snoozed": body.get("snoozed_until") is not None,
    }


class AggregatedModel:
    """Groups by key, merge window, trimming, flags and counts (docs/concepts.md)."""

    def __init__(self, spec: FeedSpec) -> None:
        assert spec.rule is not None
        self.spec = spec
        self.rule = spec.rule
        self.groups: dict[str, GroupModel] = {}
        self.member_of: dict[str, str] = {}
        self.trimmed: set[str] = set()
        self.readded: list[str] = []

    def newest(self) -> list[GroupModel]:
        return sorted(self.groups.values(), key=lambda g: g.position, reverse=True)

    def add(self, acts: Sequence[Act]) -> None:
        """Entries of one write are applied oldest first; adding a member changes nothing."""
        for act in sorted(acts, key=lambda a: a.id):
            if act.id in self.member_of:
                continue
            key = self.rule(act)
            window = self.newest()[: self.spec.merge_window]
            group = next((g for g in window if g.key == key), None)
            if group is None:
                gid = _fresh_id(act.id, self.groups)
                group = self.groups[gid] = GroupModel(gid, key, act.verb)
            bisect.insort(group.members, act.id)
            group.actors[act.id] = act.actor
            group.seen = group.read = group.archived = group.snoozed = False  # news again
            self.member_of[act.id] = group.id
            self.trim()
            if act.id in self.trimmed and act.id in self.member_of:
                self.trimmed.discard(act.id)
                self.readded.append(act.id)

    def trim(self) -> None:
        while len(self.groups) > self.spec.max_length:
            self._drop(min(self.groups.values(), key=lambda g: g.position))

    def remove(self, ids: Iterable[str]) -> None:
        for activity_id in ids:
            self.trimmed.discard(activity_id)
            gid = self.member_of.pop(activity_id, None)
            if gid is None:
                continue
            group = self.groups[gid]
            group.members.remove(activity_id)
            del group.actors[activity_id]
            if not group.members:
                del self.groups[gid]

    def _drop(self, group: GroupModel) -> None:
        del self.groups[group.id]
        self.trimmed.update(group.members)
        for activity_id in group.members:
            self.member_of.pop(activity_id, None)

    def mark(self, body: Json) -> None:
        """Apply a mark request body (``seen``/``read``/``archived``/``done`` and a target:
        ids, or all, with ``up_to`` and a ``status`` the groups must be in now)."""
        if body.get("all"):
            up_to = body.get("up_to")
            status = body.get("status")
            targets = [
                g for g in self.groups.values()
                if (up_to is None or g.position <= up_to)
                and (status is None or _in_status(g, status))
            ]  # fmt: skip
        else:
            gids = set(body.get("group_ids", []))
            gids |= {self.member_of[a] for a in body.get("activity_ids", []) if a in self.member_of}
            targets = [self.groups[g] for g in gids if g in self.groups]
        for group in targets:
            for flag in ("seen", "read", "archived", "done"):
                if body.get(flag) is not None:
                    setattr(group, flag, bool(body[flag]))
            if body.get("archived") is not None:
                group.snoozed = False  # archiving or unarchiving ends a snooze

    def snooze(self, group_ids: Iterable[str], far: bool) -> None:
        """Snooze the groups until a far time (``far``), or end their snooze now."""
        for gid in group_ids:
            group = self.groups.get(gid)
            if group is None:
                continue
            if far:
                group.snoozed = group.archived = True
            elif group.snoozed and group.archived:
                group.snoozed = group.archived = False
            else:
                group.snoozed = False

    def delete(self, group_id: str) -> list[str]:
        """Delete a group for good: its activities leave this feed; returns them."""
        group = self.groups.get(group_id)
        if group is None:
            return []
        members = list(group.members)
        self.remove(members)
        return members

    def counts(self) -> dict[str, int]:
        groups = self.groups.values()
        return {
            "unseen": sum(not g.seen and not g.archived for g in groups),
            "unread": sum(not g.read and not g.archived for g in groups),
        }


def _in_status(group: GroupModel, status: str) -> bool:
    snoozed = group.snoozed and group.archived
    return {
        "inbox": not group.archived,
        "unread": not group.read and not group.archived,
        "unseen": not group.seen and not group.archived,
        "read": group.read and not group.archived,
        "seen": group.seen and not group.archived,
        "archived": group.archived and not snoozed,
        "snoozed": snoozed,
        "all": True,
    }[status]


def _fresh_id(activity_id: str, taken: dict[str, GroupModel]) -> str:
    """A group's id is its opening activity's; should a live group hold that id already (the
    activity opened it, was removed and came back) the next one up in the 12-digit suffix."""
    gid = activity_id
    while gid in taken:
        gid = f"{gid[:14]}{(int(gid[14:], 16) + 1) % (1 << 48):012x}"
    return gid


FeedModel = FlatModel | AggregatedModel


# -- the whole deployment --------------------------------------------------------------------
class Model:
    """Every feed of every user, the follow graph and the live activities."""

    def __init__(self, specs: Sequence[FeedSpec], actor_feed: str, backfill_default: int) -> None:
        self.specs = {s.name: s for s in specs}
        self.actor_feed = actor_feed
        self.backfill_default = backfill_default
        self.fanout_groups = [s for s in specs if s.fanout and s.modelled]
        self.acts: dict[str, Act] = {}
        self.by_foreign: dict[str, set[str]] = defaultdict(set)
        self.following: dict[str, set[str]] = defaultdict(set)
        self.feeds: dict[tuple[str, str], FeedModel] = {}
        self.muted: dict[str, Json] = {}
        """User -> what they mute (``{"verbs": [...], "actors": [...]}``)."""

    def feed(self, group: str, user: str) -> FeedModel:
        found = self.feeds.get((group, user))
        if found is None:
            spec = self.specs[group]
            found = AggregatedModel(spec) if spec.aggregated else FlatModel(spec)
            self.feeds[group, user] = found
        return found

    def followers(self, user: str) -> list[str]:
        return sorted(u for u, targets in self.following.items() if user in targets)

    # -- activities --------------------------------------------------------------------------
    def add(self, acts: Sequence[Act]) -> None:
        """POST /v1/activities(/batch) answered: the actor's feed, the ``to`` feeds, and
        (fanout) every follower's fanout feeds. A re-send adds again: a no-op where the
        activity still is."""
        for act in acts:
            self.acts[act.id] = act
            if act.foreign_id is not None:
                self.by_foreign[act.foreign_id].add(act.id)
        for actor in dict.fromkeys(a.actor for a in acts):
            own = [a for a in acts if a.actor == actor]
            self._write(self.actor_feed, actor, own)
            for follower in self.followers(actor):
                for spec in self.fanout_groups:
                    self._write(spec.name, follower, own)
        targets: dict[str, list[Act]] = defaultdict(list)
        for act in acts:
            for feed in act.to:
                targets[feed].append(act)
        for feed, own in targets.items():
            group, _, user = feed.partition(":")
            if group in self.specs and self.specs[group].modelled:
                self._write(group, user, own)

    def mute(self, user: str, muted: Json) -> None:
        """PUT preferences answered: from now on what ``user`` mutes never enters their
        notification feeds (docs/concepts.md, "Muting"); what they hold stays."""
        self.muted[user] = muted

    def _mutes(self, user: str, act: Act) -> bool:
        muted = self.muted.get(user, {})
        return act.verb in muted.get("verbs", ()) or act.actor in muted.get("actors", ())

    def _write(self, group: str, user: str, acts: Sequence[Act]) -> None:
        if self.specs[group].kind == "notification":
            acts = [a for a in acts if not self._mutes(user, a)]
            if not acts:
                return
        feed = self.feed(group, user)
        if isinstance(feed, AggregatedModel):
            feed.add(acts)
        else:
            feed.add(a.id for a in acts)

    def ids_for_foreign_id(self, foreign_id: str) -> list[str]:
        return sorted(self.by_foreign.get(foreign_id, ()))

    def remove(self, ids: Sequence[str]) -> None:
        """DELETE answered: the activity leaves every feed it reached (docs/api.md)."""
        for activity_id in ids:
            act = self.acts.pop(activity_id, None)
            if act is not None and act.foreign_id is not None:
                self.by_foreign[act.foreign_id].discard(activity_id)
                if not self.by_foreign[act.foreign_id]:
                    del self.by_foreign[act.foreign_id]
        for feed in self.feeds.values():
            feed.remove(ids)

    # -- follow graph ------------------------------------------------------------------------
    def follow(self, user: str, target: str, backfill: int | None) -> bool:
        """Whether the follow is new; a new one copies the target's newest ``backfill``
        activities of its own feed into the user's fanout feeds."""
        if target in self.following[user]:
            return False
        self.following[user].add(target)
        count = self.backfill_default if backfill is None else backfill
        own = self.feed(self.actor_feed, target)
        assert isinstance(own, FlatModel)
        copied = [self.acts[i] for i in own.newest()[:count]]
        if copied:
            for spec in self.fanout_groups:
                self._write(spec.name, user, copied)
        return True

    def unfollow(self, user: str, target: str, keep_history: bool) -> bool:
        """Whether a follow existed; unless ``keep_history``, what the target's own feed
        holds leaves the user's fanout feeds (also when not following: a retry cleans up)."""
        existed = target in self.following[user]
        self.following[user].discard(target)
        if not keep_history:
            own = self.feed(self.actor_feed, target)
            assert isinstance(own, FlatModel)
            for spec in self.fanout_groups:
                self.feed(spec.name, user).remove(own.ids)
        return existed

    # -- notification state ------------------------------------------------------------------
    def mark(self, group: str, user: str, body: Json) -> dict[str, int]:
        feed = self.feed(group, user)
        assert isinstance(feed, AggregatedModel)
        feed.mark(body)
        return feed.counts()

    def snooze(self, group: str, user: str, group_ids: Sequence[str], far: bool) -> dict[str, int]:
        feed = self.feed(group, user)
        assert isinstance(feed, AggregatedModel)
        feed.snooze(group_ids, far)
        return feed.counts()

    def delete_group(self, group: str, user: str, group_id: str) -> list[str]:
        feed = self.feed(group, user)
        assert isinstance(feed, AggregatedModel)
        return feed.delete(group_id)

    def notes(self) -> list[str]:
        """Where an activity a trim had dropped came back (a re-send, a backfill).
        docs/api.md says a re-send "changes nothing"; docs/concepts.md that feeds keep their
        newest items, trimmed on every add. The model (like every backend) adds it again;
        noted, since the docs can be read either way."""
        where: dict[str, list[str]] = defaultdict(list)
        for (group, user), feed in sorted(self.feeds.items()):
            for activity_id in feed.readded:
                where[activity_id].append(f"{group}:{user}")
        return [f"{activity_id} came back after a trim into {', '.join(feeds[:6])}"
                + (f" and {len(feeds) - 6} more" if len(feeds) > 6 else "")
                for activity_id, feeds in where.items()]  # fmt: skip

    # -- reads -------------------------------------------------------------------------------
    def items(self, group: str, user: str) -> list[Json]:
        """The feed newest first, each item in the form of ``view_of`` (what a read shows)."""
        feed = self.feed(group, user)
        if isinstance(feed, AggregatedModel):
            return [g.view(feed.spec, self.acts) for g in feed.newest()]
        return [{"id": i, "summary": self.acts[i].summary()} for i in feed.newest()]

    def counts(self, group: str, user: str) -> dict[str, int] | None:
        feed = self.feed(group, user)
        if isinstance(feed, AggregatedModel) and feed.spec.kind == "notification":
            return feed.counts()
        return None


def view_of(spec: FeedSpec, body: Json) -> Json:
    """An item of an API read (HTTP or websocket) in the model's form."""
    if spec.aggregated:
        return group_view(body)
    return {"id": body["id"], "summary": activity_summary(body)}


def position(item: Json) -> str:
    """An item's position: a group's ``position``, an activity's ``id`` (rule 7)."""
    return str(item.get("position") or item["id"])
