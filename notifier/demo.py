"""A small, self-contained demonstration on the memory backend (``notifier demo``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from notifier.config import Config
from notifier.feeds import Group
from notifier.service import Notifier


def describe(group: Group, past_tense: str) -> str:
    """ "ana and 2 others liked photo:1" for a group."""
    names = group.actors[:1]
    others = group.actor_count - len(names)
    who = names[0] if not others else f"{names[0]} and {others} other{'s' * (others > 1)}"
    subject = group.activities[0].target or group.activities[0].object
    return f"{who} {past_tense} {subject}"


async def print_demo(config: Config) -> None:
    """Seed likes, comments and a follow for ``bo`` and print bo's notification feed."""
    app = Notifier(Config(feeds=config.feeds, verbs=config.verbs, limits=config.limits))
    feed = app.notification_feed("notification", "bo")
    start = datetime.now(UTC) - timedelta(minutes=30)
    seeded = [
        ("ana", "like", "photo:beach"),
        ("cy", "like", "photo:beach"),
        ("dee", "like", "photo:beach"),
        ("ana", "comment", "photo:beach"),
        ("eve", "follow", "user:bo"),
        ("cy", "like", "photo:sunset"),
    ]
    for minute, (actor, verb, target) in enumerate(seeded):
        await feed.add(
            app.activity(
                actor=actor,
                verb=verb,
                object=f"{verb}:{actor}:{target}",
                target=target,
                time=start + timedelta(minutes=minute),
            )
        )
    page = await feed.read(limit=10)
    click.echo(f"bo's notifications ({page.counts.unseen if page.counts else 0} unseen):")
    for group in page.groups:
        past = app.config.verbs.get(group.verb).past_tense
        marker = "*" if not group.is_seen else " "
        click.echo(f" {marker} {describe(group, past)}  ({group.activity_count} activities)")
    counts = await feed.mark_all(seen=True)
    click.echo(f"after opening the inbox: {counts.unseen} unseen, {counts.unread} unread")
