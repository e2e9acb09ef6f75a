"""``summary`` says what the widget's English says: checked against expected sentences, and
against the widget's own ``describe`` run in node (tests/delivery/widget_text.mjs)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from notifier.delivery.summary import summary
from notifier.feeds import Group
from notifier.model import DEFAULT_VERBS, Activity, Verb, VerbRegistry
from tests.services import unavailable

HERE = Path(__file__).resolve().parent
STATIC = HERE.parents[1] / "static"
T = datetime(2025, 3, 1, 12, tzinfo=UTC)
VERBS = VerbRegistry()


def activity(actor: str, *, target: str | None = "photo:1", object: str = "like:1",
             **extra: Any) -> Activity:  # fmt: skip
    return Activity(id="0" * 26, actor=actor, verb="like", object=object, time=T,
                    target=target, extra=extra)  # fmt: skip


def group(verb: str, activities: list[Activity], actor_count: int | None = None,
          actors: list[str] | None = None) -> Group:  # fmt: skip
    names = list(dict.fromkeys(a.actor for a in activities))
    return Group(
        id="g1", key="k", verb=verb, activities=activities, activity_count=len(activities),
        actor_count=len(names) if actor_count is None else actor_count,
        actors=names if actors is None else actors, created_at=T, updated_at=T,
        position="0" * 26, is_seen=False, is_read=False, is_archived=False,
    )  # fmt: skip


CASES: list[tuple[Group, str]] = [
    (group("like", [activity("ana")]), "ana liked your photo"),
    (group("like", [activity("ana"), activity("bo")]), "ana and bo liked your photo"),
    # Counted by actor_count, named from the newest activities.
    (group("like", [activity("ana"), activity("bo")], 4), "ana and 3 others liked your photo"),
    (group("like", [activity("ana")], 2), "ana and 1 other liked your photo"),
    (group("like", [activity("ana"), activity("ana"), activity("bo"), activity("cy")]),
     "ana and 2 others liked your photo"),
    (group("like", [activity("ana", actor_name="Ana Lima")]), "Ana Lima liked your photo"),
    (group("comment", [activity("ana", target="blog_post:9")]),
     "ana commented on your blog post"),
    (group("follow", [activity("ana", target="user:bo")]), "ana started following you"),
    (group("share", [activity("ana", target=None, object="photo:1")]), "ana shared a photo"),
    (group("pin", [activity("ana", target=None, object="nothing-typed")]),
     "ana pinned something"),
    (group("mention", [activity("ana", title={"en": "you in a post", "fr": "vous"})]),
     "ana mentioned you in a post"),
    (group("mention", [activity("ana", title={"fr": "vous", "de": "dich"})]),
     "ana mentioned vous"),
    (group("like", [activity("ana", title="the team's roadmap")]),
     "ana liked the team's roadmap"),
    (group("like", [activity("ana", title="")]), "ana liked your photo"),
    (group("approve", [activity("ana", target=None, object="request:1")]),
     "ana: approve a request"),
    # Braces in a name are text, never a placeholder filled in again.
    (group("like", [activity("ana", actor_name="{target}")]), "{target} liked your photo"),
    (group("like", [activity("ana", actor_name="Ana\n  Lima")]), "Ana Lima liked your photo"),
]  # fmt: skip


@pytest.mark.parametrize(("shown", "expected"), CASES, ids=[e for _, e in CASES])
def test_summary_reads_as_the_widget_in_english(shown: Group, expected: str) -> None:
    assert summary(shown, VERBS) == expected


def test_summary_is_what_the_widget_itself_renders() -> None:
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed (it runs the widget's describe)")
        return
    groups = [
        {
            "verb": g.verb,
            "actor_count": g.actor_count,
            "activities": [
                {"actor": a.actor, "object": a.object, "target": a.target, "extra": a.extra}
                for a in g.activities
            ],
        }
        for g, _ in CASES
    ]
    done = subprocess.run(
        [node, str(HERE / "widget_text.mjs")],
        input=json.dumps(groups), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    widget = [" ".join(text.split()) for text in json.loads(done.stdout)]
    assert [summary(g, VERBS) for g, _ in CASES] == widget


def test_the_default_past_tenses_are_the_widgets_english_templates() -> None:
    source = (STATIC / "notifier-i18n.js").read_text()
    english = source[source.index("en: {") : source.index("fr: {")]
    verbs = english[english.index("verbs: {") : english.index("},", english.index("verbs: {"))]
    templates = dict(re.findall(r'(\w+): "\{actors\} (.+) \{target\}"', verbs))
    assert templates == {v.name: v.past_tense for v in DEFAULT_VERBS}


def test_a_registered_verb_the_widget_has_no_words_for_reads_in_its_past_tense() -> None:
    verbs = VerbRegistry([*DEFAULT_VERBS, Verb("approve", "approved")])
    shown = group("approve", [activity("ana", target="request:7"), activity("bo")])
    assert summary(shown, verbs) == "ana and bo approved your request"


def test_a_group_without_bodies_names_its_actors() -> None:
    shown = group("like", [], actor_count=3, actors=["ana", "bo"])
    assert summary(shown, VERBS) == "ana and 2 others liked something"
    assert summary(group("like", [], actor_count=1, actors=[]), VERBS) == "? liked something"
