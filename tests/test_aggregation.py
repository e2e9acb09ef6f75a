"""Aggregation rules: keys, defaults, and the sandbox."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from notifier.aggregation import NOTIFICATION_RULE, RECENT_VERB_RULE, AggregationRule
from notifier.errors import ConfigError, InvalidInput
from notifier.model import Activity


def act(**kw: object) -> Activity:
    fields: dict[str, object] = {
        "id": "0" * 26,
        "actor": "ana",
        "verb": "like",
        "object": "photo:1",
        "time": datetime(2024, 3, 9, 23, 59, tzinfo=UTC),
    }
    fields.update(kw)
    return Activity(**fields)  # type: ignore[arg-type]


def test_default_rules_match_stream_framework_groupings() -> None:
    recent = AggregationRule(RECENT_VERB_RULE)
    assert recent.key(act()) == "like:2024-03-09"
    assert recent.key(act(object="photo:2")) == recent.key(act())
    note = AggregationRule(NOTIFICATION_RULE)
    assert note.key(act(target="album:7")) == "like:album:7:2024-03-09"
    assert note.key(act()) == "like:photo:1:2024-03-09"
    assert note.key(act(verb="comment")) != note.key(act())


def test_rules_can_read_extra() -> None:
    rule = AggregationRule("{{ verb }}-{{ extra.get('thread', 'none') }}")
    assert rule.key(act(extra={"thread": "t1"})) == "like-t1"
    assert rule.key(act()) == "like-none"


@pytest.mark.parametrize(
    "template",
    [
        "{{ time.__class__ }}",
        "{{ verb.__class__.__mro__ }}",
        "{{ extra['__class__'] }}",
        "{{ ''.__class__.__base__.__subclasses__() }}",
        "{{ time._tzinfo }}",
    ],
)
def test_templates_reaching_python_internals_are_rejected_at_configuration(template: str) -> None:
    with pytest.raises(ConfigError, match="private attributes are not allowed"):
        AggregationRule(template)


def test_unsafe_calls_are_rejected_by_the_sandbox() -> None:
    with pytest.raises(ConfigError, match="unsafe"):
        AggregationRule("{{ extra.update(x=1) }}")


@pytest.mark.parametrize("template", ["", "{{ verb ", "{{ nosuchname }}"])
def test_broken_templates_fail_at_configuration(template: str) -> None:
    with pytest.raises(ConfigError):
        AggregationRule(template)


def test_a_rule_failing_for_one_activity_raises_invalid_input() -> None:
    rule = AggregationRule("{{ extra.get('n', 1) + 1 }}")
    with pytest.raises(InvalidInput) as caught:
        rule.key(act(extra={"n": "text"}))
    assert caught.value.field == "extra"


def test_empty_key_never_merges_unrelated_activities() -> None:
    rule = AggregationRule("{{ extra.get('k', '') }}")
    assert rule.key(act(id="1" * 26)) != rule.key(act(id="2" * 26))
