"""The mute rule and the checks on what a user may mute (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from notifier.categories import Categories, Category
from notifier.errors import InvalidInput
from notifier.model import Activity, Limits, VerbRegistry
from notifier.preferences import (
    Muted,
    Preferences,
    check_preferences,
    decode_preferences,
    encode_preferences,
    mutes,
    receivers,
)

CATEGORIES = Categories(
    [Category("billing", critical=True, verbs=("invite",)), Category("social", verbs=("like",))]
)


def act(actor: str = "ana", verb: str = "like", category: str | None = "social") -> Activity:
    return Activity(
        id="0" * 26, actor=actor, verb=verb, object="o", time=datetime.now(UTC), category=category
    )


def prefs(categories: tuple[str, ...] = (), verbs: tuple[str, ...] = (),
          actors: tuple[str, ...] = ()) -> Preferences:  # fmt: skip
    return Preferences(
        muted=Muted(
            categories=frozenset(categories), verbs=frozenset(verbs), actors=frozenset(actors)
        )
    )


def check(**lists: list[object]) -> Preferences:
    return check_preferences(
        categories=lists.get("categories", []),
        verbs=lists.get("verbs", []),
        actors=lists.get("actors", []),
        known_categories=CATEGORIES,
        known_verbs=VerbRegistry(),
        limits=Limits(max_muted=3),
    )


def test_mutes_by_category_verb_and_actor_each() -> None:
    assert mutes(act(), prefs(categories=("social",)), CATEGORIES)
    assert mutes(act(verb="comment", category=None), prefs(verbs=("comment",)), CATEGORIES)
    assert mutes(act(actor="cy"), prefs(actors=("cy",)), CATEGORIES)
    assert not mutes(act(actor="ana"), prefs(actors=("cy",), verbs=("post",)), CATEGORIES)
    assert not mutes(act(category=None), prefs(categories=("social",)), CATEGORIES)
    assert not mutes(act(), Preferences(), CATEGORIES)


def test_a_critical_category_is_never_muted_whatever_is_stored() -> None:
    billing = act(actor="cy", verb="invite", category="billing")
    stored = prefs(categories=("billing",), verbs=("invite",), actors=("cy",))
    assert not mutes(billing, stored, CATEGORIES)
    # The same activity once the category is no longer critical:
    assert mutes(billing, stored, Categories([Category("billing")]))


def test_check_names_the_field_at_fault() -> None:
    assert check(categories=["social"], verbs=["like", "like"], actors=["cy"]) == prefs(
        ("social",), ("like",), ("cy",)
    )
    cases: list[tuple[dict[str, list[object]], str, str]] = [
        ({"categories": ["billing"]}, "muted.categories", "critical"),
        ({"categories": ["nope"]}, "muted.categories", "unknown"),
        ({"categories": ["Bad Name"]}, "muted.categories", "must match"),
        ({"verbs": ["levitate"]}, "muted.verbs", "unknown verb"),
        ({"actors": ["no spaces"]}, "muted.actors", "1-128"),
        ({"actors": ["a", "b", "c", "d"]}, "muted.actors", "limits.max_muted"),
        ({"verbs": [1]}, "muted.verbs", "strings"),
    ]
    for lists, field, words in cases:
        with pytest.raises(InvalidInput) as caught:
            check(**lists)
        assert caught.value.field == field and words in caught.value.message, lists


def test_stored_form_round_trips_and_is_stable() -> None:
    value = prefs(("social",), ("like", "comment"), ("cy", "ana"))
    data = encode_preferences(value)
    assert data == encode_preferences(decode_preferences(data))
    assert decode_preferences(data) == value
    assert b'"actors":["ana","cy"]' in data
    assert decode_preferences(b'{"muted":{"verbs":["like"],"later":1},"other":2}') == prefs(
        verbs=("like",)
    )


def test_receivers_group_users_by_what_they_keep() -> None:
    items = ["a1", "a2"]
    subjects = [act(actor="cy"), act(actor="dee", verb="comment", category=None)]
    stored = {
        "mutes_cy": prefs(actors=("cy",)),
        "mutes_both": prefs(actors=("cy", "dee")),
        "mutes_other": prefs(actors=("zed",)),
        "mutes_cy_too": prefs(categories=("social",)),
    }
    users = ["u1", "mutes_cy", "mutes_both", "mutes_other", "u2", "mutes_cy_too"]
    assert receivers(users, items, subjects, stored, CATEGORIES) == [
        (["a1", "a2"], ["u1", "mutes_other", "u2"]),
        (["a2"], ["mutes_cy", "mutes_cy_too"]),
    ]
    assert receivers(users, items, subjects, {}, CATEGORIES) == [(items, users)]
    assert receivers(["mutes_both"], items, subjects, stored, CATEGORIES) == []
