"""Activities, ids and validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from notifier import ids
from notifier.errors import InvalidInput
from notifier.model import (
    Limits,
    Verb,
    VerbRegistry,
    decode_activity,
    encode_activity,
    new_activity,
)

VERBS = VerbRegistry()
LIMITS = Limits()


def make(**overrides: object) -> object:
    fields: dict[str, object] = {"actor": "ana", "verb": "like", "object": "photo:1"}
    fields.update(overrides)
    return new_activity(**fields, verbs=VERBS, limits=LIMITS)  # type: ignore[arg-type]


def test_ids_sort_as_strings_in_time_order() -> None:
    base = datetime(2024, 5, 1, tzinfo=UTC)
    times = [base + timedelta(microseconds=n * 997) for n in range(200)]
    made = [ids.make_id(t) for t in times]
    assert sorted(made) == made
    assert all(len(i) == ids.ID_LENGTH and ids.is_id(i) for i in made)
    assert ids.id_time(made[17]) == times[17]


def test_ids_are_unique_within_one_microsecond() -> None:
    now = datetime.now(UTC)
    assert len({ids.make_id(now) for _ in range(10_000)}) == 10_000


def test_same_foreign_id_and_time_give_the_same_id() -> None:
    t = datetime(2024, 1, 1, tzinfo=UTC)
    assert ids.make_id(t, "like:9") == ids.make_id(t, "like:9")
    assert ids.make_id(t, "like:9") != ids.make_id(t, "like:10")
    assert ids.make_id(t, "like:9") != ids.make_id(t + timedelta(microseconds=1), "like:9")


def test_naive_and_offset_times_are_normalised_to_utc() -> None:
    naive = make(time=datetime(2024, 1, 1, 12))
    offset = make(time=datetime(2024, 1, 1, 14, tzinfo=timezone(timedelta(hours=2))))
    assert naive.time == offset.time  # type: ignore[attr-defined]
    assert offset.time.tzinfo == UTC  # type: ignore[attr-defined]


def test_activity_survives_encoding() -> None:
    activity = make(
        target="album:1", extra={"url": "/p/1", "n": [1, 2]}, foreign_id="f", to=["notification:bo"]
    )
    assert decode_activity(encode_activity(activity)) == activity  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"actor": ""}, "actor"),
        ({"actor": "a b"}, "actor"),
        ({"actor": "x" * 129}, "actor"),
        ({"verb": "explode"}, "verb"),
        ({"object": ""}, "object"),
        ({"object": "x" * 257}, "object"),
        ({"target": "a\x00b"}, "target"),
        ({"foreign_id": 5}, "foreign_id"),
        ({"extra": {"big": "x" * 20_000}}, "extra"),
        ({"extra": {"bad": object()}}, "extra"),
        ({"to": ["nocolon"]}, "to"),
        ({"to": ["notification:b{o}"]}, "to"),
        ({"to": "notification:bo"}, "to"),
        ({"to": [f"notification:u{i}" for i in range(101)]}, "to"),
        ({"time": datetime(1969, 12, 31, tzinfo=UTC)}, "time"),
        ({"time": "yesterday"}, "time"),
    ],
)
def test_invalid_fields_are_named(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        make(**overrides)
    assert caught.value.field == field


def test_limits_are_configurable() -> None:
    tight = Limits(max_ref_length=5, max_extra_bytes=10, max_to=1)
    with pytest.raises(InvalidInput, match="longer than 5"):
        new_activity(actor="a", verb="like", object="photo:1", verbs=VERBS, limits=tight)
    with pytest.raises(InvalidInput, match="10 bytes"):
        new_activity(
            actor="a", verb="like", object="p", extra={"k": "vvvvvv"}, verbs=VERBS, limits=tight
        )


def test_extra_nested_too_deep_is_refused_without_recursing() -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(5000):  # the JSON encoder's recursion would give up long before
        node["a"] = node = {}
    with pytest.raises(InvalidInput, match="nested deeper than 32 levels") as caught:
        make(extra=deep)
    assert caught.value.field == "extra"
    fine: dict[str, object] = {"list": [[[1]]]}
    assert make(extra=fine) is not None
    with pytest.raises(InvalidInput, match="deeper than 3"):
        new_activity(actor="a", verb="like", object="p", extra=fine, verbs=VERBS,
                     limits=Limits(max_extra_depth=3))  # fmt: skip


def test_time_is_bounded_to_a_window_around_now() -> None:
    now = datetime.now(UTC)
    assert make(time=now + timedelta(seconds=500)) is not None  # clock skew
    with pytest.raises(InvalidInput, match="in the future") as caught:
        make(time=now + timedelta(days=1))  # would sit at the top of every feed
    assert caught.value.field == "time"
    with pytest.raises(InvalidInput, match="in the past"):
        make(time=now - timedelta(days=3651))
    tight = Limits(max_future_seconds=0, max_past_days=1)
    with pytest.raises(InvalidInput, match="in the past"):
        new_activity(actor="a", verb="like", object="p", time=now - timedelta(days=2),
                     verbs=VERBS, limits=tight)  # fmt: skip


def test_unknown_feed_group_in_to_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="unknown feed group"):
        new_activity(
            actor="a",
            verb="like",
            object="p",
            to=["nope:bo"],
            verbs=VERBS,
            limits=LIMITS,
            known_groups=["notification"],
        )


def test_verb_registry() -> None:
    verbs = VerbRegistry([Verb("wave", "waved at")])
    assert verbs.get("wave").past_tense == "waved at"
    assert "like" not in verbs
    with pytest.raises(InvalidInput):
        verbs.register(Verb("Bad Verb", "x"))
