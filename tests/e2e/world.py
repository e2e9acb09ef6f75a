"""The world the end-to-end test drives: feed groups, users, a follow graph, and a seeded stream
of operations, phase by phase.

Each round has three phases, separated by quiet points (fanout finished):

- **add**: posts fanned out to timelines, notifications through ``to`` (bursts on one target,
  back-dated ones, a day boundary crossed by the synthetic clock), batches, re-sends (same
  ``foreign_id`` and time: 200, nothing changes), conflicting re-sends (409), and a second
  activity under a ``foreign_id`` already used (another time: another activity);
- **remove**: DELETE by id or by ``foreign_id``;
- **graph**: follows with backfill, unfollows with and without ``keep_history``.

Before any activity, some users mute a verb or an actor (``PUT /v1/users/{user}/preferences``):
what they mute never reaches their notification feed (docs/concepts.md, "Muting").

Marks (seen / read / archived / done, one group, by activity, all, all ``up_to``, all of one
status), snoozes (until tomorrow, or ended now) and deletes of a notification run in every
phase.
A flat fanout feed sees only adds, or only removals, between two quiet points, so its final
state does not depend on the order workers run in; every write to a notification feed is
serialised by the driver, so the model applies them in the server's order. Re-sends, conflicts
and removals name activities of earlier phases only (their first POST is answered).

The plan depends only on the seed; what a mark picks from a client's state is decided when it
runs.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e.model import FeedSpec, notification_rule

Json = dict[str, Any]

ACTOR_FEED = "user"
BACKFILL_DEFAULT = 20

FEEDS = [
    FeedSpec("user", "flat", max_length=1000),
    FeedSpec("timeline", "flat", max_length=24, fanout=True),
    # Fanned out too; which group an activity opens depends on the order workers deliver
    # (trims, merge window), so only client vs HTTP is compared for it.
    FeedSpec(
        "digest",
        "aggregated",
        max_length=8,
        fanout=True,
        max_activities=5,
        merge_window=3,
        rule_template="{{ actor }}:{{ time.strftime('%Y-%m-%d') }}",
        modelled=False,
    ),
    FeedSpec(
        "notification",
        "notification",
        max_length=12,
        max_activities=5,
        merge_window=4,
        rule=notification_rule,
    ),
]
SPECS = {s.name: s for s in FEEDS}


def feeds_toml() -> str:
    """The ``[feeds.*]`` tables of the servers' config, from ``FEEDS``."""
    out = []
    for spec in FEEDS:
        out += [f"[feeds.{spec.name}]", f'kind = "{spec.kind}"', f"max_length = {spec.max_length}"]
        if spec.fanout:
            out.append("fanout = true")
        if spec.aggregated:
            out += [
                f"max_activities = {spec.max_activities}",
                f"merge_window = {spec.merge_window}",
            ]
        if spec.rule_template is not None:
            out.append(f'rule = "{spec.rule_template}"')
        out.append("")
    return "\n".join(out)


# -- operations ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Post:
    """POST /v1/activities. ``expect``: 201 new, 200 re-send, 409 conflicting re-send."""

    key: str
    body: Json
    expect: int = 201


@dataclass(frozen=True)
class Batch:
    """POST /v1/activities/batch (their ``to`` feeds are distinct: one entry per feed)."""

    keys: tuple[str, ...]
    bodies: tuple[Json, ...]


@dataclass(frozen=True)
class Delete:
    """DELETE /v1/activities/{id} or ?foreign_id= of the activity planned as ``key``."""

    key: str
    foreign_id: str | None
    """Set: remove by it (every activity carrying it goes); None: by id."""


@dataclass(frozen=True)
class Follow:
    user: str
    target: str
    backfill: int | None


@dataclass(frozen=True)
class Unfollow:
    user: str
    target: str
    keep_history: bool


@dataclass(frozen=True)
class Mark:
    """A mark of ``user``'s notification feed; what it targets is picked when it runs (from
    the user's client if it has one): ``target`` all | up_to | group | activity."""

    user: str
    flags: Json
    target: str
    via_server: bool
    pick: float


@dataclass(frozen=True)
class Snooze:
    """Snooze one of ``user``'s notification groups until tomorrow (``far``), or end a
    snooze now; the group is picked when it runs, as a mark's is."""

    user: str
    far: bool
    via_server: bool
    pick: float


@dataclass(frozen=True)
class DeleteGroup:
    """Delete one of ``user``'s notification groups for good (picked when it runs)."""

    user: str
    via_server: bool
    pick: float


@dataclass(frozen=True)
class Mute:
    """PUT /v1/users/{user}/preferences: what ``user`` mutes (``{"verbs": [...], ...}``)."""

    user: str
    muted: Json


Op = Post | Batch | Delete | Follow | Unfollow | Mark | Mute | Snooze | DeleteGroup


@dataclass(frozen=True)
class Phase:
    name: str
    ops: list[Op]


@dataclass(frozen=True)
class Size:
    """How big a world is."""

    users: int = 36
    celebrities: int = 3
    rounds: int = 3
    adds: int = 130
    removals: int = 14
    graph_ops: int = 14
    marks: int = 12
    """Marks per phase."""
    tabs: int = 24
    live_cap: int | None = None
    """Soak: removals also delete the oldest activities past this many live ones."""


@dataclass(frozen=True)
class TabPlan:
    """One websocket client: its user and ``{feed: subscribe limit}``."""

    user: str
    feeds: dict[str, int]
    late: bool = False
    """Connects after the first phase instead of before any activity."""


VERBS_POST = ["post", "share"]
VERBS_NOTIFY = ["like", "like", "like", "comment", "reply"]


@dataclass
class World:
    """The seeded plan (see the module docstring)."""

    seed: int
    size: Size = field(default_factory=Size)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.users = [f"u{i:02d}" for i in range(self.size.users)]
        self.celebrities = self.users[: self.size.celebrities]
        self.following: dict[str, set[str]] = {u: set() for u in self.users}
        self.bodies: dict[str, Json] = {}
        """Every planned activity by key (kept while live, for re-sends and removals)."""
        self.live: list[str] = []
        """Keys of activities posted in finished phases and not removed (oldest first)."""
        self.fresh: list[str] = []
        self.serial = 0
        total = self.size.rounds * self.size.adds * 1.15
        midnight = datetime(2026, 3, 2, tzinfo=UTC)
        self.clock = midnight - timedelta(seconds=total * 7 / 2)
        self.midnight_burst = False

    # -- the initial state -------------------------------------------------------------------
    def initial_follows(self) -> Phase:
        """A few users followed by most, everyone following a few others."""
        ops: list[Op] = []
        for user in self.users:
            wanted = {c for c in self.celebrities if c != user and self.rng.random() < 0.85}
            others = [u for u in self.users if u != user and u not in self.celebrities]
            wanted |= set(self.rng.sample(others, self.rng.randint(2, 5)))
            for target in sorted(wanted):
                self.following[user].add(target)
                ops.append(Follow(user, target, 0))
        self.rng.shuffle(ops)
        return Phase("follows", ops)

    def initial_mutes(self) -> Phase:
        """About one user in four mutes a notifying verb or another user (from an rng of
        its own: the rest of the world is the same with or without it)."""
        rng = random.Random(self.seed * 31 + 7)
        ops: list[Op] = []
        for user in self.users:
            if rng.random() < 0.125:
                ops.append(Mute(user, {"verbs": [rng.choice(["comment", "reply", "like"])]}))
            elif rng.random() < 0.15:
                ops.append(Mute(user, {"actors": [rng.choice(self.users)]}))
        return Phase("mutes", ops)

    def tabs(self) -> list[TabPlan]:
        """Websocket clients: most users one, two users two (each connection goes to a
        random web process)."""
        users = self.rng.sample(self.users, min(len(self.users), self.size.tabs - 2))
        users += self.rng.sample(users, 2)  # second tabs of two users
        plans = []
        for n, user in enumerate(users):
            window = self.rng.random() < 0.3
            feeds = {"timeline": 6 if window else 25, "notification": 4 if window else 25,
                     "digest": 3 if window else 25}  # fmt: skip
            if self.rng.random() < 0.25:
                feeds["user"] = 10
            plans.append(TabPlan(user, feeds, late=n % 8 == 7))
        return plans

    # -- rounds ------------------------------------------------------------------------------
    def rounds(self, count: int | None = None) -> Iterator[Phase]:
        """``count`` rounds (forever with None) of add, remove and graph phases."""
        n = 0
        while count is None or n < count:
            n += 1
            yield self._finish(Phase(f"r{n}-add", self._marks(self._adds())))
            yield self._finish(Phase(f"r{n}-remove", self._marks(self._removals())))
            yield self._finish(Phase(f"r{n}-graph", self._marks(self._graph())))

    def _finish(self, phase: Phase) -> Phase:
        """Activities of this phase become candidates for later re-sends and removals."""
        self.live += self.fresh
        self.fresh = []
        return phase

    def _marks(self, ops: list[Op]) -> list[Op]:
        for _ in range(self.size.marks):
            flags = self.rng.choice([
                {"seen": True}, {"seen": True}, {"read": True}, {"read": True},
                {"archived": True}, {"read": False}, {"seen": False, "read": False},
                {"archived": False}, {"done": True}, {"done": False, "read": True},
            ])  # fmt: skip
            target = self.rng.choice(["all", "up_to", "up_to", "group", "group", "activity",
                                      "all-read", "all-unseen"])  # fmt: skip
            user, via_server, pick = (
                self.rng.choice(self.users),
                self.rng.random() < 0.2,
                self.rng.random(),
            )
            kind = self.rng.random()
            op: Op = (
                Snooze(user, kind < 0.07, via_server, pick) if kind < 0.14
                else DeleteGroup(user, via_server, pick) if kind < 0.2
                else Mark(user, flags, target, via_server, pick)
            )  # fmt: skip
            ops.insert(self.rng.randrange(len(ops) + 1), op)
        return ops

    # -- add phase ---------------------------------------------------------------------------
    def _tick(self, low: float = 2, high: float = 12) -> datetime:
        self.clock += timedelta(seconds=self.rng.uniform(low, high))
        return self.clock.replace(microsecond=self.clock.microsecond // 1000 * 1000)

    def _activity(self, actor: str, verb: str, obj: str, when: datetime, **more: Any) -> Post:
        self.serial += 1
        key = f"k{self.serial}"
        body: Json = {"actor": actor, "verb": verb, "object": obj,
                      "time": when.isoformat().replace("+00:00", "Z")}  # fmt: skip
        if self.rng.random() < 0.9:
            body["foreign_id"] = f"{verb}:{self.serial}"
        if self.rng.random() < 0.5:
            body["extra"] = {"n": self.serial, "url": f"/x/{self.serial}"}
        body.update({k: v for k, v in more.items() if v is not None})
        self.bodies[key] = body
        self.fresh.append(key)
        return Post(key, body)

    def _notify(self, when: datetime, owner: str | None = None, photo: int | None = None,
                verb: str | None = None, actor: str | None = None) -> Post:  # fmt: skip
        owner = owner or self.rng.choice(self.users)
        actor = actor or self.rng.choice([u for u in self.users if u != owner])
        verb = verb or self.rng.choice(VERBS_NOTIFY)
        target = f"photo:{owner}:{self.rng.randrange(3) if photo is None else photo}"
        return self._activity(actor, verb, f"{verb}:{self.serial + 1}", when, target=target,
                              to=[f"notification:{owner}"])  # fmt: skip

    def _burst(self) -> list[Op]:
        """Likes of one photo by many actors: one growing group (two across midnight)."""
        owner = self.rng.choice(self.users)
        photo = self.rng.randrange(3)
        midnight = datetime(self.clock.year, self.clock.month, self.clock.day,
                            tzinfo=UTC) + timedelta(days=1)  # fmt: skip
        if not self.midnight_burst and midnight - self.clock < timedelta(minutes=4):
            self.midnight_burst = True
            self.clock = max(self.clock, midnight - timedelta(seconds=40))
        actors = self.rng.sample([u for u in self.users if u != owner], self.rng.randint(6, 12))
        return [self._notify(self._tick(1, 8), owner, photo, "like", a) for a in actors]

    def _adds(self) -> list[Op]:
        ops: list[Op] = []
        earlier = [k for k in self.live if "foreign_id" in self.bodies[k]]
        while len(ops) < self.size.adds:
            r = self.rng.random()
            if r < 0.28:
                actor = self.rng.choice(self.celebrities + self.users)  # celebrities post more
                verb = self.rng.choice(VERBS_POST)
                ops.append(self._activity(actor, verb, f"{verb}:{self.serial + 1}", self._tick()))
            elif r < 0.56:
                ops.append(self._notify(self._tick()))
            elif r < 0.63:
                ops += self._burst()
            elif r < 0.68:
                ops.append(self._batch())
            elif r < 0.74:  # back-dated: late, maybe into yesterday's group
                ops.append(self._notify(self.clock - timedelta(seconds=self.rng.uniform(30, 900))))
            elif r < 0.78:  # a mention of two users
                owners = self.rng.sample(self.users, 2)
                actor = self.rng.choice([u for u in self.users if u not in owners])
                ops.append(
                    self._activity(
                        actor,
                        "mention",
                        f"comment:{self.serial + 1}",
                        self._tick(),
                        to=[f"notification:{o}" for o in owners],
                    )
                )
            elif earlier and r < 0.88:  # re-send: the same body
                key = self.rng.choice(earlier)
                ops.append(Post(key, self.bodies[key], expect=200))
            elif earlier and r < 0.91:  # same foreign_id and time, other content
                key = self.rng.choice(earlier)
                changed = {**self.bodies[key], "extra": {"changed": self.serial}}
                ops.append(Post(key, changed, expect=409))
            elif earlier and r < 0.94:  # same foreign_id, another time: another activity
                key = self.rng.choice(earlier)
                again = self._notify(self._tick())
                body = {**again.body, "foreign_id": self.bodies[key]["foreign_id"]}
                self.bodies[again.key] = body
                ops.append(Post(again.key, body))
            else:
                actor = self.rng.choice(self.users)
                ops.append(self._activity(actor, "post", f"post:{self.serial + 1}", self._tick()))
        return ops

    def _batch(self) -> Batch:
        owners = self.rng.sample(self.users, self.rng.randint(2, 4))
        posts = [self._notify(self._tick(), owner) for owner in owners]
        if self.rng.random() < 0.5:
            actor = self.rng.choice(self.users)
            posts.append(self._activity(actor, "post", f"post:{self.serial + 1}", self._tick()))
        return Batch(tuple(p.key for p in posts), tuple(p.body for p in posts))

    # -- remove phase ------------------------------------------------------------------------
    def _removals(self) -> list[Op]:
        doomed: list[str] = []
        cap = self.size.live_cap
        if cap is not None and len(self.live) > cap:
            doomed = self.live[: len(self.live) - cap]
        rest = [k for k in self.live if k not in set(doomed)]
        doomed += self.rng.sample(rest, min(len(rest), self.size.removals))
        ops: list[Op] = []
        shared: dict[str, list[str]] = {}  # foreign id -> live keys carrying it
        for key in self.live:
            fid = self.bodies[key].get("foreign_id")
            if fid is not None:
                shared.setdefault(fid, []).append(key)
        gone: set[str] = set()
        by_id: set[str] = set()  # foreign ids whose activities go one by one this phase
        for key in doomed:
            if key in gone:
                continue
            fid = self.bodies[key].get("foreign_id")
            if fid is not None and fid not in by_id and self.rng.random() < 0.5:
                gone |= set(shared[fid])  # by foreign_id: every activity carrying it
                ops.append(Delete(key, fid))
            else:
                if fid is not None:
                    by_id.add(fid)
                gone.add(key)
                ops.append(Delete(key, None))
        self.live = [k for k in self.live if k not in gone]
        for key in gone:
            del self.bodies[key]
        self.rng.shuffle(ops)
        return ops

    # -- graph phase -------------------------------------------------------------------------
    def _graph(self) -> list[Op]:
        ops: list[Op] = []
        for _ in range(self.size.graph_ops):
            user = self.rng.choice(self.users)
            followed = sorted(self.following[user])
            if followed and self.rng.random() < 0.45:
                target = self.rng.choice(followed)
                self.following[user].discard(target)
                ops.append(Unfollow(user, target, keep_history=self.rng.random() < 0.3))
            else:
                target = self.rng.choice([u for u in self.users if u != user])
                self.following[user].add(target)
                backfill = self.rng.choice([None, 0, 3, 10, 50])
                ops.append(Follow(user, target, backfill))
            if self.rng.random() < 0.1:  # repeated: no-op answers (followed / unfollowed false)
                ops.append(ops[-1])
        return ops
