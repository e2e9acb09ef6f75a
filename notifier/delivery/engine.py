"""Escalation: groups still unseen (or unread) a while after they changed go out through
webhooks and email digests, once per group and window.

The flow, all on dramatiq (timers: notifier/fanout/timers.py; no scheduler of its own):

1. **After a write** to notification feeds, ``timers_for`` schedules, for the rules of the
   written activities' categories, one ``Escalate`` timer per webhook delay (due that long
   after the write) and one ``Digest`` timer per digest window the groups fall due in (due
   when the window ends). One timer per write of a chunk of users, not one per user.
2. **Escalate** re-reads each user's feed: a group whose newest activity is still one of that
   write's (it did not change since: a later change has its own timer, which re-arms the
   rule) and that is still unseen (or unread), not archived, snoozed nor done, is *decided*
   for each endpoint that wants its category, if the user's preferences allow webhooks.
3. **Digest** re-reads each user's notification feeds at the window's end and decides one
   email with every group that fell due (it changed at least ``after_s`` ago), is still
   unseen (or unread), and was not emailed at its current position yet.
4. **Deciding** is a claim (``DeliveryStore.claim``): the delivery, with an id derived from
   what was decided, and for a digest the marks "emailed at this position" of its groups,
   are written in one atomic step, once. A second run of the same timer (a retry, a worker
   killed half-way) finds the stored delivery and sends that one, never a second; and when
   it has nothing to decide any more (the user saw the group since, or the first run's claim
   marked the digest's groups), it still starts the attempt of that run's decision if it is
   pending (``_resume``): the first run may have died before scheduling it.
5. **Attempts** (``Attempt`` timers on the delivery queue) lease the delivery, send it, and
   record the outcome: delivered; failed, retried with exponential backoff; or dead after
   ``max_attempts`` (a dead letter, listed and replayed through the server API). An attempt
   whose worker died is retried when its lease runs out.

What reaches a receiver is therefore: every decided delivery at least once, each decision
exactly once, and every attempt of one delivery under the same id (the idempotency key), so
a receiver that remembers ids sees each (group, window) exactly once (docs/delivery.md).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

import msgspec

from notifier import ids, metrics
from notifier.delivery.email import DigestData, EmailFailed, digest_item, render_digest, send_email
from notifier.delivery.model import Delivery, Endpoint, Outcome, make_id, window_key
from notifier.delivery.settings import DeliverySettings, Rule
from notifier.delivery.store import DeliveryStore
from notifier.delivery.summary import summary
from notifier.delivery.webhooks import WebhookFailed, WebhookSender, event_body
from notifier.fanout.timers import Attempt, Digest, Escalate, Timer
from notifier.feedgroups import FeedGroup, FeedKind
from notifier.feeds import Group, hydrate
from notifier.preferences import Preferences
from notifier.storage.base import Storage

if TYPE_CHECKING:
    from notifier.config import Config
    from notifier.fanout.jobs import Dispatcher

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_R = TypeVar("_R")
#: Users whose feeds one timer reads at once.
_READS = 16
#: How long a process keeps the endpoints it read for its attempts.
_ENDPOINTS_TTL_S = 2.0


def is_pending(group: Group, rule: Rule) -> bool:
    """Whether ``group`` still waits for the user: not archived (nor snoozed), not done, and
    not yet seen (or read, per the rule)."""
    if group.is_archived or group.is_done:
        return False
    return not group.is_read if rule.until == "read" else not group.is_seen


def window_start(at: datetime, window_s: float) -> datetime:
    """The start of the digest window holding ``at`` (windows tile time from the epoch)."""
    seconds = at.timestamp()
    return datetime.fromtimestamp(math.floor(seconds / window_s) * window_s, UTC)


def backoff(attempt: int, min_ms: int, max_ms: int) -> timedelta:
    """The wait after failed attempt number ``attempt`` (1, 2, …): doubling from ``min_ms``
    up to ``max_ms``, with ±20 % jitter so that retries of one outage do not arrive together."""
    base = min(max_ms, min_ms * 2 ** min(attempt - 1, 40))
    return timedelta(milliseconds=base * random.uniform(0.8, 1.2))


class Escalation:
    """Escalation for one process (see the module docstring); the fanout manager owns it."""

    def __init__(
        self,
        config: Config,
        storage: Storage,
        store: DeliveryStore,
        dispatcher: Dispatcher,
        *,
        webhooks: WebhookSender | None = None,
    ) -> None:
        self.config = config
        self.settings: DeliverySettings = config.delivery
        self.storage = storage
        self.store = store
        self.dispatcher = dispatcher
        self.webhooks = webhooks or WebhookSender(self.settings.webhook)
        self._endpoint_cache: tuple[float, dict[str, Endpoint]] | None = None
        self.notification_groups = [
            g for g in config.feeds.groups.values() if g.kind is FeedKind.NOTIFICATION
        ]

    # -- after a write ---------------------------------------------------------------------
    def timers_for(
        self,
        group: FeedGroup,
        users: Sequence[str],
        activity_ids: Sequence[str],
        categories: Mapping[str, str],
        now: datetime,
    ) -> list[Timer]:
        """The timers that escalate what writing ``activity_ids`` to ``users``' ``group``
        feeds may leave unseen. Computed from the write, not from what it changed: a retried
        write that changes nothing schedules them again (the runs dedupe), so a failure
        between the write and the scheduling loses none."""
        if group.kind is not FeedKind.NOTIFICATION or not users or not self.settings.enabled:
            return []
        webhook: dict[float, list[str]] = defaultdict(list)
        digests: set[datetime] = set()
        window = self.settings.digest.window_s
        for activity_id in activity_ids:
            category = categories.get(activity_id)
            rule = self.settings.rule(category, "webhook")
            if rule is not None:
                webhook[rule.after_s].append(activity_id)
            rule = self.settings.rule(category, "email")
            if rule is not None:
                # A digest's "changed at" is its newest activity's time, which may be a few
                # minutes ahead (limits.max_future_seconds): the window is the later one.
                changed = max(now, ids.id_time(activity_id))
                digests.add(window_start(changed + timedelta(seconds=rule.after_s), window))
        listed = list(users)
        timers = [
            Timer(
                at=now + timedelta(seconds=after_s),
                job=Escalate(group=group.name, users=listed, activity_ids=ids_),
            )
            for after_s, ids_ in sorted(webhook.items())
        ]
        timers += [
            Timer(
                at=start + timedelta(seconds=window), job=Digest(users=listed, window_start=start)
            )
            for start in sorted(digests)
        ]
        return timers

    # -- webhooks --------------------------------------------------------------------------
    async def run_escalate(self, job: Escalate) -> None:
        """Decide the webhook deliveries of ``job``'s groups that still wait (idempotent)."""
        group = self.config.feeds.groups.get(job.group)
        if group is None or group.kind is not FeedKind.NOTIFICATION:
            log.warning("escalation for a feed group that is no longer one: %s", job.group)
            return
        endpoints = [e for e in await self.store.endpoints() if not e.disabled]
        if not endpoints:
            return
        prefs = await self.storage.preferences(job.users)
        wanted = set(job.activity_ids)
        # Only groups whose newest activity is this write's or later can be the ones to
        # deliver: the read starts there (usually one group), not at the top of the feed.
        after = _just_below(min(job.activity_ids))
        now = datetime.now(UTC)

        async def decide(user: str) -> tuple[list[Delivery], list[str]]:
            stored, _, notes = await self.storage.read_inbox(
                group, user, limit=group.max_length, id_gt=after
            )
            changed = [g for g in stored if g.position in wanted]
            if not changed:
                return [], []
            mine = prefs.get(user, Preferences())
            found, undecided = [], []
            for shown in await hydrate(self.storage, changed, None, notes):
                rule = self.settings.rule(shown.category, "webhook")
                if rule is None:
                    continue
                wanting = [e for e in endpoints if e.wants(shown.category)]
                if not is_pending(shown, rule) or not mine.allows("webhook", shown.category):
                    # Not to be decided now; but an earlier run of this timer may have decided
                    # it before the user saw it and died before its attempt was scheduled.
                    undecided += [_webhook_id(e, group, user, shown) for e in wanting]
                    continue
                text = summary(shown, self.config.verbs)
                found += [self._webhook(e, group, user, shown, text, rule, now) for e in wanting]
            return found, undecided

        results = await _bounded(decide, job.users)
        await self._claim_and_send([d for found, _ in results for d in found])
        await self._resume([(i, i) for _, undecided in results for i in undecided])

    def _webhook(
        self, endpoint: Endpoint, group: FeedGroup, user: str, shown: Group, text: str,
        rule: Rule, now: datetime,
    ) -> Delivery:  # fmt: skip
        """The delivery of ``shown`` to ``endpoint`` (its id: ``_webhook_id``)."""
        delivery_id = _webhook_id(endpoint, group, user, shown)
        body = event_body(
            delivery_id=delivery_id, created_at=now, user=user, feed=group.name, group=shown,
            summary=text, rule=rule,
        )  # fmt: skip
        return Delivery(
            id=delivery_id,
            channel="webhook",
            target=endpoint.id,
            scope=delivery_id,
            user=user,
            payload=body,
            created_at=now,
        )

    async def _claim_and_send(self, decided: Sequence[Delivery]) -> None:
        """Claim each decision and start an attempt of every one still pending (also those an
        earlier run claimed: its worker may have died before sending)."""
        if not decided:
            return
        claims = await _bounded(self.store.claim, decided)
        fresh = sum(created for _, created in claims)
        if fresh:
            metrics.DELIVERY_DECISIONS.labels(decided[0].channel).inc(fresh)
        await self._attempt_now([stored for stored, _ in claims if stored.status == "pending"])

    async def _resume(self, keys: Sequence[tuple[str, str]]) -> None:
        """Start an attempt of each delivery of ``keys`` (scope, id) that was decided and is
        still pending, though this run does not decide it again: a run of the same timer
        claimed it, then its worker died before it scheduled the attempt, and what it saw
        changed since (the user saw the group, or its digest groups were marked by that
        claim). Without this, such a decision would stay pending and never be sent."""
        if not keys:
            return
        stored = await _bounded(lambda key: self.store.get(*key), keys)
        await self._attempt_now([d for d in stored if d is not None and d.status == "pending"])

    async def _attempt_now(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        now = datetime.now(UTC)
        await self.dispatcher.schedule(
            [Timer(at=now, job=Attempt(scope=d.scope, delivery_id=d.id)) for d in deliveries]
        )

    # -- email digests ---------------------------------------------------------------------
    async def run_digest(self, job: Digest) -> None:
        """Decide the digest of ``job``'s window for each of its users (idempotent)."""
        prefs = await self.storage.preferences(job.users)
        users = [u for u in job.users if (p := prefs.get(u)) is not None and p.email]
        if not users or not self.notification_groups:
            return
        now = datetime.now(UTC)

        async def decide(user: str) -> None:
            await self._digest(user, prefs[user], job.window_start, now)

        await _bounded(decide, users)

    async def _digest(self, user: str, prefs: Preferences, start: datetime, now: datetime) -> None:
        delivery_id = make_id(window_key(start), "email", user)
        due = await self._due_for_email(user, prefs, now)
        if due:
            names = [f"{feed}:{g.id}" for feed, g in due]
            emailed = await self.store.marks(user, names)
            due = [
                (f, g) for (f, g), n in zip(due, names, strict=True) if emailed.get(n) != g.position
            ]  # fmt: skip
        if not due:
            # Nothing (left) to decide; but this window's email may have been decided by an
            # earlier run whose worker died before scheduling its attempt.
            await self._resume([(user, delivery_id)])
            return
        due.sort(key=lambda fg: fg[1].position, reverse=True)
        limit = self.settings.digest.max_groups
        window = timedelta(seconds=self.settings.digest.window_s)
        data = DigestData(
            delivery_id=delivery_id,
            user=user,
            address=prefs.email or "",
            window_start=start,
            window_end=start + window,
            items=[digest_item(feed, g, self.config.verbs) for feed, g in due[:limit]],
            more=max(0, len(due) - limit),
        )
        delivery = Delivery(
            id=delivery_id,
            channel="email",
            target=user,
            scope=user,
            user=user,
            payload=msgspec.json.encode(data),
            created_at=now,
        )
        marks = {f"{feed}:{g.id}": g.position for feed, g in due}
        stored, created = await self.store.claim(delivery, marks)
        if created:
            metrics.DELIVERY_DECISIONS.labels("email").inc()
        else:
            # This window's email was decided already (by another run of a timer of this
            # window). Groups it did not hold go in the next window's, never a second email.
            left = await self.store.marks(user, list(marks))
            if any(left.get(name) != position for name, position in marks.items()):
                nxt = start + window
                await self.dispatcher.schedule(
                    [Timer(at=nxt + window, job=Digest(users=[user], window_start=nxt))]
                )
        if stored.status == "pending":
            await self._attempt_now([stored])

    async def _due_for_email(
        self, user: str, prefs: Preferences, now: datetime
    ) -> list[tuple[str, Group]]:
        """The groups of ``user``'s notification feeds that an email rule says are due now:
        still waiting, changed at least ``after_s`` ago (and within retention: marks older
        than that are gone, so older groups are never emailed again)."""
        oldest = now - self.settings.retention
        after = f"{ids.micros(oldest):014x}{0:012x}"  # positions within retention only
        found: list[tuple[str, Group]] = []
        for group in self.notification_groups:
            stored, _, notes = await self.storage.read_inbox(
                group, user, limit=group.max_length, id_gt=after
            )
            waiting = [
                g for g in stored
                if not g.is_archived and not (g.is_seen and g.is_read)
                and ids.id_time(g.position) >= oldest
            ]  # fmt: skip
            for shown in await hydrate(self.storage, waiting, None, notes):
                rule = self.settings.rule(shown.category, "email")
                if rule is None or not is_pending(shown, rule):
                    continue
                if shown.updated_at + timedelta(seconds=rule.after_s) > now:
                    continue
                if prefs.allows("email", shown.category):
                    found.append((group.name, shown))
        return found

    # -- attempts --------------------------------------------------------------------------
    async def run_attempt(self, job: Attempt) -> None:
        """Send a pending delivery once, under a lease, and record how it went."""
        now = datetime.now(UTC)
        started = await self.store.begin(job.scope, job.delivery_id, now, now + self.settings.lease)
        if started is None:
            # Delivered, dead, unknown, or another attempt holds the lease: a live one will
            # record its outcome; a dead worker's lease runs out, and this timer comes back
            # then to try again.
            held = await self.store.get(job.scope, job.delivery_id)
            if held is not None and held.status == "pending" and held.lease_until > now:
                await self.dispatcher.schedule([Timer(at=held.lease_until, job=job)])
            return
        try:
            await self._send(started)
        except (WebhookFailed, EmailFailed) as exc:
            await self._failed(started, job, exc.reason, permanent=exc.permanent)
            return
        except Exception as exc:
            # Anything else (a template that does not render, the endpoint read failing) is
            # a failed attempt too: counted, retried with backoff, dead after the last, and
            # never a lease left held by an attempt that gave up.
            log.exception("delivery attempt raised id=%s", started.id)
            await self._failed(started, job, f"{type(exc).__name__}: {exc}"[:300], permanent=False)
            return
        done = Outcome(status="delivered", at=datetime.now(UTC))
        if not await self.store.finish(job.scope, job.delivery_id, started.attempts, done):
            log.warning("delivery sent after its lease ran out id=%s", started.id)
        metrics.DELIVERY_ATTEMPTS.labels(started.channel, "delivered").inc()

    async def _send(self, delivery: Delivery) -> None:
        if delivery.channel == "webhook":
            endpoint = (await self._endpoints()).get(delivery.target)
            if endpoint is None:
                raise WebhookFailed("the endpoint was deleted", permanent=True)
            if endpoint.disabled:
                raise WebhookFailed("the endpoint is disabled", permanent=True)
            await self.webhooks.post(endpoint.url, endpoint.secret, delivery.id, delivery.payload)
            return
        data = msgspec.json.decode(delivery.payload, type=DigestData)
        await send_email(render_digest(data, self.settings), self.settings.email)

    async def _endpoints(self) -> dict[str, Endpoint]:
        """Endpoints by id, read at most every ``_ENDPOINTS_TTL_S`` per process (an attempt
        would otherwise read them all each time): a change reaches attempts within that."""
        now = time.monotonic()
        if self._endpoint_cache is None or now - self._endpoint_cache[0] > _ENDPOINTS_TTL_S:
            found = {e.id: e for e in await self.store.endpoints()}
            self._endpoint_cache = (now, found)
        return self._endpoint_cache[1]

    async def _failed(
        self, delivery: Delivery, job: Attempt, reason: str, *, permanent: bool
    ) -> None:
        now = datetime.now(UTC)
        last = permanent or delivery.attempts >= self.settings.max_attempts
        outcome = Outcome(status="dead" if last else "pending", at=now, error=reason)
        if not await self.store.finish(job.scope, job.delivery_id, delivery.attempts, outcome):
            return
        if last:
            metrics.DELIVERY_ATTEMPTS.labels(delivery.channel, "dead").inc()
            log.warning(
                "delivery dead after %d attempt(s): %s channel=%s target=%s id=%s",
                delivery.attempts, reason, delivery.channel, delivery.target, delivery.id,
            )  # fmt: skip
            return
        metrics.DELIVERY_ATTEMPTS.labels(delivery.channel, "retry").inc()
        wait = backoff(
            delivery.attempts, self.settings.min_backoff_ms, self.settings.max_backoff_ms
        )
        log.info(
            "delivery attempt %d failed (%s), again in %.1fs channel=%s id=%s",
            delivery.attempts, reason, wait.total_seconds(), delivery.channel, delivery.id,
        )  # fmt: skip
        await self.dispatcher.schedule([Timer(at=now + wait, job=job)])

    async def replay(self, scope: str, delivery_id: str) -> Delivery | None:
        """Send a delivery again (a dead letter, or one a receiver lost): pending again, an
        attempt now. None when unknown."""
        again = await self.store.replay(scope, delivery_id, datetime.now(UTC))
        if again is not None:
            await self._attempt_now([again])
        return again

    async def close(self) -> None:
        await self.webhooks.close()


def _webhook_id(endpoint: Endpoint, group: FeedGroup, user: str, shown: Group) -> str:
    """The id of ``shown``'s delivery to ``endpoint``: it names the endpoint, the feed and the
    group at its current position, so each change of a group is one delivery."""
    return make_id(shown.position, "webhook", endpoint.id, group.name, user, shown.id)


def _just_below(activity_id: str) -> str:
    """The id right before ``activity_id`` (ids are fixed-width hex, so they sort as text)."""
    return f"{max(0, int(activity_id, 16) - 1):0{len(activity_id)}x}"


async def _bounded(work: Callable[[_T], Awaitable[_R]], items: Sequence[_T]) -> list[_R]:
    """``work`` on every item, at most ``_READS`` at once, results in order."""
    limit = asyncio.Semaphore(_READS)

    async def one(item: _T) -> _R:
        async with limit:
            return await work(item)

    return list(await asyncio.gather(*(one(i) for i in items)))
