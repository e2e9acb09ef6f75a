"""``Manager``: add and remove activities, follow and unfollow; decides what fanout enqueues.

As in Stream Framework, the manager is the one object an app talks to. What a caller waits for
is bounded and small: storing the activity, writing the actor's own feed and the ``to`` feeds,
and enqueueing one fanout job. Everything proportional to the number of followers runs in
workers (``run_fanout`` pages the followers into chunk jobs, ``run_chunk`` writes one chunk),
and every write is idempotent, so a job that runs twice leaves the feeds as one run would.

Timers (``schedule``, ``run_timer``; see ``notifier.fanout.timers``) run a job at a given
time: an activity with ``expires_at`` gets an ``Expire`` timer when it is added, and the timer
removes it the way ``remove_activity`` does.

Removal is ordered so that no copy survives a race with an in-flight add: the removal job is
enqueued before anything is deleted (so it cannot be lost), the activity bodies are deleted
before any follower feed is cleaned, and a chunk that adds checks *after* writing that the
bodies still exist, taking its copies back out if they do not.

Users' mutes (notifier.preferences) are applied here, when writing notification feeds: the
preferences of a write's users are read once (one round trip for a whole chunk), and users who
mute an activity are left out of its write, so it never reaches their feed, counts or
realtime frames. Other feed kinds are written as they always were.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple, assert_never

import msgspec

from notifier import metrics
from notifier.delivery.engine import Escalation
from notifier.delivery.store import deliveries_for
from notifier.errors import ConfigError, InvalidInput
from notifier.fanout.followers import FollowCounts, FollowerLookup, StorageFollowers
from notifier.fanout.jobs import ChunkJob, Dispatcher, FanoutJob, Job, Priority, describe
from notifier.fanout.policy import MemoryPresence, Presence, PriorityPolicy, RecentlyActive
from notifier.fanout.timers import Attempt, Digest, Escalate, Expire, Timer, TimerJob, Wake
from notifier.feedgroups import FeedGroup, FeedKind
from notifier.feeds import NotificationFeed, entries_for
from notifier.inbox import Inbox
from notifier.model import Activity, check_user_id, split_feed_id
from notifier.preferences import Preferences, receivers
from notifier.realtime.bus import Bus, EventKind, NullBus, marked, publish_changes
from notifier.storage.base import Entry, FeedChange, Storage

if TYPE_CHECKING:
    from notifier.config import Config

log = logging.getLogger(__name__)

#: Ids read from an actor's own feed per round trip when unfollowing.
_PAGE = 1_000
#: HIGH chunks a fanout job writes itself (concurrently, as it pages on) instead of enqueueing:
#: a small fanout to active users (up to twice chunk_size) never waits for a broker hop.
_INLINE_CHUNKS = 2
#: Chunks' worth of followers one page read brings (below the celebrity threshold).
_PAGE_CHUNKS = 4


class Manager:
    """Activities in, feeds out: the Python API of fanout (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        storage: Storage,
        dispatcher: Dispatcher,
        *,
        bus: Bus | None = None,
        policy: PriorityPolicy | None = None,
        presence: Presence | None = None,
        followers: FollowerLookup | None = None,
        owns_storage: bool = False,
        owns_bus: bool = False,
    ) -> None:
        self.config = config
        self.settings = config.fanout
        self.storage = storage
        self.dispatcher = dispatcher
        self.bus: Bus = bus or NullBus()
        self.presence: Presence = presence or MemoryPresence()
        self.policy: PriorityPolicy = policy or RecentlyActive(
            self.presence, self.settings.active_window_s
        )
        self.followers_of: FollowerLookup = followers or StorageFollowers(storage)
        self.actor_group = config.feeds[config.feeds.actor_group]
        self.fanout_groups = config.feeds.fanout_groups
        self._owns_storage = owns_storage
        self._owns_bus = owns_bus
        self.escalation = Escalation(
            config, storage, deliveries_for(storage, config.delivery.retention), dispatcher
        )
        """Webhooks and email digests of groups left unseen (notifier.delivery)."""

    # -- activities ------------------------------------------------------------------------
    async def add_activity(self, activity: Activity) -> None:
        """Store ``activity``, write the actor's feed and its ``to`` feeds, enqueue fanout."""
        await self.add_activities([activity])

    async def add_activities(self, activities: Sequence[Activity], *, fanout: bool = True) -> None:
        """``add_activity`` for a batch: one storage call per feed group and actor, one fanout
        job per actor. With ``fanout=False`` followers' feeds are left alone (bulk imports)."""
        if len(activities) > self.config.limits.max_batch:
            raise InvalidInput("activities", f"more than {self.config.limits.max_batch}")
        targets = self._to_feeds(activities)
        await self.storage.put_activities(activities)
        by_actor = _by_actor(activities)
        jobs: list[tuple[Priority, Job]] = []
        if fanout and self.fanout_groups:
            for actor, own in by_actor.items():
                entries = {g.name: entries_for(g, own) for g in self.fanout_groups}
                job = FanoutJob(
                    op="add",
                    actor=actor,
                    activity_ids=[a.id for a in own],
                    entries=entries,
                    categories=_categories(own),
                )
                jobs.append((Priority.HIGH, job))
        # With the bodies stored, the fanout job can start: it is enqueued while the direct
        # feeds are written (every step is idempotent, so a caller's retry after a failure
        # of either completes both).
        done = await asyncio.gather(
            self.dispatcher.send(jobs), self._add_direct(by_actor, targets), return_exceptions=True
        )
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome
        # After the direct writes: an expiry that is due at once cannot overtake them (a
        # removal racing the add would miss what the add writes after it).
        await self.dispatcher.schedule(
            [
                Timer(at=a.expires_at, job=Expire(activity_id=a.id))
                for a in activities
                if a.expires_at is not None
            ]
        )

    async def _add_direct(
        self, by_actor: dict[str, list[Activity]], targets: dict[str, dict[str, list[Activity]]]
    ) -> None:
        """The actors' own feeds and the activities' ``to`` feeds (the mutes of all the
        users of notification ``to`` feeds read at once)."""
        for actor, own in by_actor.items():
            await self._add(self.actor_group, [actor], entries_for(self.actor_group, own))
        groups = {name: self.config.feeds[name] for name in targets}
        notified = {
            user
            for name, by_user in targets.items()
            if groups[name].kind is FeedKind.NOTIFICATION
            for user in by_user
        }
        prefs = await self._preferences(list(notified), groups.values())
        categories = _categories([a for own in by_actor.values() for a in own])
        for name, by_user in targets.items():
            group = groups[name]
            for own, users in _same_activities(by_user):
                await self._add(group, users, entries_for(group, own), prefs, categories)

    async def remove_activity(
        self, activity_id: str | None = None, *, foreign_id: str | None = None
    ) -> list[str]:
        """Take an activity out of every feed it reached, by id or foreign id (all activities
        sharing it); returns the ids removed, empty when nothing was stored."""
        if (activity_id is None) == (foreign_id is None):
            raise InvalidInput("activity_id", "give exactly one of activity_id and foreign_id")
        if activity_id is not None:
            ids = [activity_id]
        else:
            ids = await self.storage.find_foreign_ids([foreign_id or ""])
        bodies = await self.storage.get_activities(ids)
        await self._remove_stored(bodies)
        return sorted(bodies)

    async def _remove_stored(self, bodies: Mapping[str, Activity]) -> None:
        """``remove_activity`` for stored activities: enqueue their removal, then take them
        out of the actors' and the ``to`` feeds."""
        removals = [
            FanoutJob(
                op="remove",
                actor=actor,
                activity_ids=[a.id for a in own],
                to=sorted({feed for a in own for feed in a.to}),
            )
            for actor, own in _by_actor(list(bodies.values())).items()
        ]
        # Enqueued first: once the broker holds the job, nothing below can be lost.
        await self.dispatcher.send([(Priority.HIGH, job) for job in removals])
        for job in removals:
            await self._remove_direct(job)

    async def _remove_direct(self, job: FanoutJob) -> None:
        """Delete the bodies, then clean the actor's feed and the ``to`` feeds (idempotent)."""
        await self.storage.delete_activities(job.activity_ids)
        await self._remove(self.actor_group, [job.actor], job.activity_ids)
        users_by_group: dict[str, list[str]] = defaultdict(list)
        for feed in job.to:
            name, user = split_feed_id(feed)
            users_by_group[name].append(user)
        for name, users in users_by_group.items():
            if name in self.config.feeds:
                await self._remove(self.config.feeds[name], users, job.activity_ids)

    # -- timers ----------------------------------------------------------------------------
    async def schedule(self, job: TimerJob, at: datetime) -> None:
        """Run ``job`` at ``at`` (aware) in a worker: never before it, at least once, late
        by about the broker's pick-up (``fanout.poll_ms``) once due."""
        await self.dispatcher.schedule([Timer(at=at, job=job)])

    async def run_timer(self, job: TimerJob) -> None:
        """Run a due timer job, by kind. Each kind's handler is idempotent: timers are
        delivered at least once."""
        match job:
            case Expire():
                await self._expire(job)
            case Wake():
                await self._wake(job)
            case Escalate():
                await self.escalation.run_escalate(job)
            case Digest():
                await self.escalation.run_digest(job)
            case Attempt():
                await self.escalation.run_attempt(job)
            case _:
                assert_never(job)

    async def wake_later(
        self, group: FeedGroup, user: str, group_ids: Sequence[str], until: datetime
    ) -> None:
        """Schedule the end of a snooze: each group comes back at ``until``."""
        timers = [
            Timer(at=until, job=Wake(group=group.name, user=user, group_id=gid, until=until))
            for gid in dict.fromkeys(group_ids)
        ]
        await self.dispatcher.schedule(timers)

    async def _wake(self, job: Wake) -> None:
        """Bring a snoozed group back unseen and unread, and tell the user's connections.
        Nothing to do when the snooze ended or moved meanwhile (``Inbox.wake``)."""
        group = self.config.feeds.groups.get(job.group)
        if group is None or group.kind is not FeedKind.NOTIFICATION:
            log.warning("wake timer for a feed group that is no longer one: %s", job.group)
            return
        feed = NotificationFeed(self.storage, group, job.user)
        counts = await Inbox(feed).wake(job.group_id, job.until)
        if counts is not None:
            await self.bus.publish([marked(job.user, job.group, counts)])

    async def _expire(self, job: Expire) -> None:
        """Remove the activity if it is still stored and has expired. Nothing to do when it
        is gone (removed before it expired, or by an earlier run of this timer) or not
        expired (stored again with a later ``expires_at``: that add has its own timer)."""
        bodies = await self.storage.get_activities([job.activity_id])
        activity = bodies.get(job.activity_id)
        if activity is None or not activity.expired(datetime.now(UTC)):
            return
        log.info("activity expired: removing it activity=%s actor=%s", activity.id, activity.actor)
        await self._remove_stored(bodies)

    # -- workers ---------------------------------------------------------------------------
    async def run_fanout(self, job: FanoutJob) -> None:
        """Page through ``job.actor``'s followers and enqueue their chunk jobs.

        Below the celebrity threshold one job enqueues every chunk, split HIGH / LOW by the
        policy, and writes the first HIGH chunks itself. Above it every chunk goes LOW and one
        step enqueues at most ``celebrity_window`` chunks, then queues its own continuation
        behind them on LOW, so other actors' chunks enqueued meanwhile run between a
        celebrity's slices.
        """
        size = self.settings.chunk_size
        threshold = self.settings.celebrity_threshold
        # Below the celebrity threshold a page of followers spans several chunks: a fanout to
        # up to that many followers is one read and one policy lookup, with no empty read
        # after it. A celebrity's pages stay one chunk each (its slices are counted in chunks).
        wide = size * max(1, min(_PAGE_CHUNKS, self.settings.celebrity_window))
        celebrity = job.celebrity
        page: list[str] | None = None
        limit = size if celebrity else wide
        if job.first_step:
            # Independent reads, in parallel: the latency before active users see an
            # activity is this job's round trips.
            prepared, first = await asyncio.gather(
                self._prepare(job), self.followers_of.followers(job.actor, limit=limit)
            )
            if prepared is None:
                return
            job, page = prepared, first
            if len(first) < limit:  # every follower is in this page: it is the count
                celebrity = len(first) > threshold
        if celebrity is None:
            count = await self.followers_of.follower_count(job.actor)
            celebrity = count > threshold
            if celebrity:
                log.info("celebrity fanout: spreading on LOW followers=%d %s", count, describe(job))
        buffers: dict[Priority, list[str]] = {Priority.HIGH: [], Priority.LOW: []}
        after, sent = job.after, 0
        # The first HIGH chunks (``_INLINE_CHUNKS``) are written by this job itself, while it
        # goes on paging and enqueueing the others: a broker round trip fewer before active
        # users see the activity. LOW chunks never run here: they stay behind HIGH work.
        mine: list[asyncio.Task[None]] = []
        try:
            while True:
                if page is None:
                    limit = size if celebrity else wide
                    page = await self.followers_of.followers(job.actor, limit=limit, after=after)
                if page:
                    after = page[-1]
                high, low = ([], page) if celebrity else await self.policy.split(job.actor, page)
                buffers[Priority.HIGH] += high
                buffers[Priority.LOW] += low
                last = len(page) < limit
                page = None
                out: list[tuple[Priority, Job]] = []
                for priority, users in buffers.items():
                    while len(users) >= size or (last and users):
                        chunk = self._chunk(job, users[:size])
                        if priority is Priority.HIGH and len(mine) < _INLINE_CHUNKS:
                            mine.append(asyncio.get_running_loop().create_task(
                                self.run_chunk(chunk)))  # fmt: skip
                        else:
                            out.append((priority, chunk))
                        del users[:size]
                if out:
                    await self.dispatcher.send(out)
                    sent += len(out)
                if last:
                    break
                if celebrity and sent >= self.settings.celebrity_window:
                    rest = msgspec.structs.replace(job, after=after, celebrity=True)
                    await self.dispatcher.send([(Priority.LOW, rest)])
                    break
        except BaseException:
            for task in mine:
                task.cancel()
            await asyncio.gather(*mine, return_exceptions=True)
            raise
        for task in mine:
            await task

    async def _prepare(self, job: FanoutJob) -> FanoutJob | None:
        """First step only: finish a removal's direct part, or drop activities already gone."""
        if job.op == "remove":
            await self._remove_direct(job)
            await self._remove_from_keepers(job)
            return job
        present = await self.storage.get_activities(job.activity_ids)
        ids = [i for i in job.activity_ids if i in present]
        if not ids:
            log.info("fanout skipped: activities removed before it ran %s", describe(job))
            return None
        if len(ids) == len(job.activity_ids):
            return job
        entries = {name: [e for e in es if e.id in present] for name, es in job.entries.items()}
        return msgspec.structs.replace(job, activity_ids=ids, entries=entries)

    async def _remove_from_keepers(self, job: FanoutJob) -> None:
        """A removal reaches the users who unfollowed the actor keeping its activities (they
        are no followers, so the chunks miss them), a page of them per batched write."""
        if not self.fanout_groups:
            return
        size, after = self.settings.chunk_size, None
        while True:
            users = await self.storage.history_keepers(job.actor, limit=size, after=after)
            if users:
                for group in self.fanout_groups:
                    await self._remove(group, users, job.activity_ids)
            if len(users) < size:
                return
            after = users[-1]

    @staticmethod
    def _chunk(job: FanoutJob, users: list[str]) -> ChunkJob:
        return ChunkJob(
            op=job.op,
            actor=job.actor,
            activity_ids=job.activity_ids,
            users=users,
            entries=job.entries,
            categories=job.categories,
        )

    async def run_chunk(self, job: ChunkJob) -> None:
        """Write one chunk: one batched storage call (and one publish) per fanout group, or a
        few when some users mute some of the activities (their preferences read once)."""
        if job.op == "add":
            groups = [(self._group(name), entries) for name, entries in job.entries.items()]
            prefs = await self._preferences(job.users, [group for group, _ in groups])
            for group, entries in groups:
                await self._add(group, job.users, entries, prefs, job.categories)
                metrics.FANOUT_WRITES.inc(len(job.users))
            present = await self.storage.get_activities(job.activity_ids)
            gone = [i for i in job.activity_ids if i not in present]
            if gone:
                # Removed while this chunk ran: the removal's chunk may already have passed
                # these users, so take the copies back out here.
                log.info("chunk undone for removed activities %s", describe(job))
                for name in job.entries:
                    await self._remove(self._group(name), job.users, gone)
        else:
            for group in self.fanout_groups:
                await self._remove(group, job.users, job.activity_ids)

    def _group(self, name: str) -> FeedGroup:
        if name not in self.config.feeds:
            raise ConfigError(f"a fanout job names feed group {name!r}, unknown to this worker")
        return self.config.feeds[name]

    # -- follow graph ----------------------------------------------------------------------
    async def follow(self, user: str, target: str, *, backfill: int | None = None) -> bool:
        """Make ``user`` follow ``target`` and copy ``target``'s latest ``backfill`` activities
        (default ``fanout.backfill_default``) into ``user``'s fanout feeds; False when
        ``user`` already followed ``target`` (nothing is copied then)."""
        return bool(await self.follow_many(user, [target], backfill=backfill))

    async def follow_many(
        self, user: str, targets: Sequence[str], *, backfill: int | None = None
    ) -> list[str]:
        """``follow`` for several targets at once; returns the targets newly followed."""
        check_user_id(user, "user")
        for target in targets:
            check_user_id(target, "target")
        limit = self.settings.backfill_default if backfill is None else backfill
        if isinstance(limit, bool) or not 0 <= limit <= self.settings.backfill_max:
            raise InvalidInput("backfill", f"must be an integer 0-{self.settings.backfill_max}")
        new = await self.storage.follow(user, targets)
        if not new or not limit or not self.fanout_groups:
            return new
        # The edge exists before the actor feeds are read: an activity missing from this read
        # was written after it, so its fanout finds the new edge.
        ids = [
            i
            for target in new
            for i in await self.storage.read_flat(self.actor_group, target, limit=limit)
        ]
        bodies = await self.storage.get_activities(ids)
        activities = [bodies[i] for i in ids if i in bodies]
        if activities:
            prefs = await self._preferences([user], self.fanout_groups)
            categories = _categories(activities)
            for group in self.fanout_groups:
                await self._add(group, [user], entries_for(group, activities), prefs, categories)
        return new

    async def unfollow(self, user: str, target: str, *, keep_history: bool = False) -> bool:
        """Stop ``user`` following ``target`` and, unless ``keep_history``, remove
        ``target``'s activities from ``user``'s fanout feeds; False when not followed."""
        return bool(await self.unfollow_many(user, [target], keep_history=keep_history))

    async def unfollow_many(
        self, user: str, targets: Sequence[str], *, keep_history: bool = False
    ) -> list[str]:
        """``unfollow`` for several targets; returns the targets that were followed.

        History is removed for every target named, followed or not, so that a retried
        unfollow still cleans up. What is removed is what the target's own feed still holds
        (its newest ``max_length`` activities), which is everything fanout copied as long as
        the actor feed is at least as long as the fanout feeds.
        """
        check_user_id(user, "user")
        for target in targets:
            check_user_id(target, "target")
        if keep_history and self.fanout_groups:
            # Recorded first: an unfollow that dies half-way must not leave activities that
            # a later removal cannot reach (removals page through followers and keepers).
            await self.storage.keep_history(user, targets)
        gone = await self.storage.unfollow(user, targets)
        if keep_history or not self.fanout_groups:
            return gone
        ids: list[str] = []
        for target in dict.fromkeys(targets):
            cursor: str | None = None
            while True:
                page = await self.storage.read_flat(
                    self.actor_group, target, limit=_PAGE, id_lt=cursor
                )
                ids += page
                if len(page) < _PAGE:
                    break
                cursor = page[-1]
        if ids:
            for group in self.fanout_groups:
                await self._remove(group, [user], ids)
        return gone

    async def followers(
        self, user: str, *, limit: int = 100, after: str | None = None
    ) -> list[str]:
        """A page of ``user``'s followers (as the follower lookup sees them)."""
        return await self.followers_of.followers(user, limit=limit, after=after)

    async def following(
        self, user: str, *, limit: int = 100, after: str | None = None
    ) -> list[str]:
        """A page of the users ``user`` follows, in id order."""
        return await self.storage.following(user, limit=limit, after=after)

    async def follow_counts(self, user: str) -> FollowCounts:
        """Followers and followings of ``user`` (exact)."""
        return FollowCounts(*await self.storage.follow_counts(user))

    # -- presence and lifecycle ------------------------------------------------------------
    async def mark_active(self, users: Sequence[str]) -> None:
        """Record ``users`` as active now: the default policy sends their copies HIGH."""
        await self.presence.touch(users)

    async def join(self, seconds: float = 60.0) -> None:
        """Wait until every queued fanout job is done (for tests, imports and shutdown);
        TimeoutError after ``seconds``. Only meaningful while workers are running."""
        await self.dispatcher.join(seconds)

    async def close(self) -> None:
        """Stop in-process workers and release the broker (and storage, if opened here)."""
        await self.escalation.close()  # before in-process workers stop: its pool is theirs
        await self.dispatcher.close()
        await self.presence.close()
        if self._owns_bus:
            await self.bus.close()
        if self._owns_storage:
            await self.storage.close()

    # -- helpers ---------------------------------------------------------------------------
    def _to_feeds(self, activities: Sequence[Activity]) -> dict[str, dict[str, list[Activity]]]:
        """``to`` feeds by group name, then user, then the activities each receives."""
        targets: dict[str, dict[str, list[Activity]]] = defaultdict(lambda: defaultdict(list))
        for activity in activities:
            for feed in activity.to:
                name, user = split_feed_id(feed)
                if name not in self.config.feeds:
                    raise InvalidInput("to", f"unknown feed group {name!r} in {feed!r}")
                targets[name][user].append(activity)
        return targets

    async def _preferences(
        self, users: Sequence[str], groups: Iterable[FeedGroup]
    ) -> dict[str, Preferences]:
        """The stored preferences of ``users``, read only when one of ``groups`` is a
        notification group (mutes apply to nothing else)."""
        if users and any(group.kind is FeedKind.NOTIFICATION for group in groups):
            return await self.storage.preferences(users)
        return {}

    async def _add(
        self,
        group: FeedGroup,
        users: Sequence[str],
        entries: list[Entry],
        prefs: Mapping[str, Preferences] | None = None,
        categories: Mapping[str, str] | None = None,
    ) -> None:
        """Write ``entries`` into ``users``' ``group`` feeds and announce what changed. In a
        notification group, ``prefs`` (of some of ``users``) leave out what each user mutes
        (``categories``: activity id → category): one write per distinct set of entries,
        and with no mute in play exactly the one write it would be without preferences."""
        found = categories or {}
        if not prefs or group.kind is not FeedKind.NOTIFICATION:
            await self._write(group, users, entries, found)
            return
        subjects = [_Subject(e.actor, e.verb, found.get(e.id)) for e in entries]
        for kept, who in receivers(users, entries, subjects, prefs, self.config.categories):
            await self._write(group, who, kept, found)

    async def _write(
        self,
        group: FeedGroup,
        users: Sequence[str],
        entries: list[Entry],
        categories: Mapping[str, str],
    ) -> None:
        """Write, announce, then schedule the escalation of what may stay unseen (from the
        write itself: a retry of a write that changes nothing schedules it again)."""
        changes = await self.storage.add_to_feeds(group, users, entries)
        await self._publish(group.name, "added", changes)
        timers = self.escalation.timers_for(
            group, users, [e.id for e in entries], categories, datetime.now(UTC)
        )
        if timers:
            await self.dispatcher.schedule(timers)

    async def _remove(self, group: FeedGroup, users: Sequence[str], ids: Sequence[str]) -> None:
        changes = await self.storage.remove_from_feeds(group, users, ids)
        await self._publish(group.name, "removed", changes)

    async def _publish(self, feed: str, kind: EventKind, changes: list[FeedChange]) -> None:
        """Publish right after each write, so a job failing at its next write has already
        announced this one (its retry finds nothing changed and announces nothing). A bus
        failure is logged, not raised: the write is done and a retry would publish nothing;
        clients heal from storage when they resume."""
        if not changes:
            return
        try:
            await publish_changes(self.bus, feed, kind, changes)
        except Exception:
            log.exception(
                "realtime publish failed changes=%d first_user=%s", len(changes), changes[0].user
            )


class _Subject(NamedTuple):
    """What the mute rule looks at for an entry (``notifier.preferences.Subject``)."""

    actor: str
    verb: str
    category: str | None


def _categories(activities: Sequence[Activity]) -> dict[str, str]:
    """Activity id → category, for the categorised ones (what jobs carry for the mute rule)."""
    return {a.id: a.category for a in activities if a.category is not None}


def _by_actor(activities: Sequence[Activity]) -> dict[str, list[Activity]]:
    grouped: dict[str, list[Activity]] = defaultdict(list)
    for activity in activities:
        grouped[activity.actor].append(activity)
    return grouped


def _same_activities(
    by_user: dict[str, list[Activity]],
) -> list[tuple[list[Activity], list[str]]]:
    """Users grouped by the exact activities they receive: one storage call per group."""
    grouped: dict[tuple[str, ...], tuple[list[Activity], list[str]]] = {}
    for user, activities in by_user.items():
        key = tuple(a.id for a in activities)
        grouped.setdefault(key, (activities, []))[1].append(user)
    return list(grouped.values())


__all__ = ["Manager"]
