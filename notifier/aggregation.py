"""Aggregation rules: a jinja2 template, rendered in a sandbox, that names an activity's group.

Activities whose rule renders the same key (within a feed's merge window) are shown as one
group: "ana and 3 others liked your photo". Rules come from configuration, which operators
write but attackers may influence, so templates run in jinja2's immutable sandbox and are
also checked before use: any attribute or item whose name starts with ``_`` is refused, and
the rule is rendered once against a sample activity so a broken rule fails at start, not
during a fanout.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2 import StrictUndefined, TemplateError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from notifier.errors import ConfigError, InvalidInput
from notifier.model import Activity

#: Stream Framework's RecentVerbAggregator: one group per verb per day.
RECENT_VERB_RULE = "{{ verb }}:{{ time.strftime('%Y-%m-%d') }}"
#: Stream Framework's NotificationAggregator, keyed on the target (falling back to the object):
#: "ana and 4 others liked your photo" is one group per verb, photo and day.
NOTIFICATION_RULE = "{{ verb }}:{{ target or object }}:{{ time.strftime('%Y-%m-%d') }}"

MAX_KEY_LENGTH = 512

_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)

_SAMPLE = Activity(
    id="0" * 26,
    actor="sample-actor",
    verb="like",
    object="object:1",
    target="target:1",
    time=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    extra={"sample": "value"},
    foreign_id="sample:1",
)


def _context(activity: Activity) -> dict[str, Any]:
    return {
        "id": activity.id,
        "actor": activity.actor,
        "verb": activity.verb,
        "object": activity.object,
        "target": activity.target,
        "time": activity.time,
        "date": activity.time.date(),
        "extra": activity.extra,
        "foreign_id": activity.foreign_id,
    }


def _reject_private_access(template: str) -> None:
    tree = _env.parse(template)
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name: object = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        if isinstance(name, str) and name.startswith("_"):
            raise ConfigError(
                f"aggregation rule {template!r} reaches {name!r}: private attributes are "
                "not allowed in rules"
            )


class AggregationRule:
    """A compiled, checked rule; ``key(activity)`` gives the activity's group key."""

    def __init__(self, template: str) -> None:
        if not template.strip():
            raise ConfigError("aggregation rule is empty")
        try:
            _reject_private_access(template)
            self._template = _env.from_string(template)
        except TemplateError as exc:
            raise ConfigError(f"aggregation rule {template!r} is not valid jinja2: {exc}") from None
        self.source = template
        try:
            self._render(_SAMPLE)
        except SecurityError as exc:
            raise ConfigError(f"aggregation rule {template!r} is unsafe: {exc}") from None
        except _RENDER_ERRORS as exc:
            raise ConfigError(f"aggregation rule {template!r} fails on a sample: {exc}") from None

    def _render(self, activity: Activity) -> str:
        return self._template.render(_context(activity))

    def key(self, activity: Activity) -> str:
        """The group key of ``activity`` (at most MAX_KEY_LENGTH characters, never empty).

        Raises InvalidInput when the rule cannot be rendered for this activity (say it reads
        an ``extra`` field the activity lacks); callers render keys before storing anything.
        """
        try:
            key = self._render(activity)
        except _RENDER_ERRORS as exc:
            raise InvalidInput("extra", f"aggregation rule {self.source!r} fails: {exc}") from None
        if not key:
            # An empty key would silently merge unrelated activities: keep each on its own.
            return f"~{activity.id}"
        return key[:MAX_KEY_LENGTH]

    def __repr__(self) -> str:
        return f"AggregationRule({self.source!r})"


_RENDER_ERRORS = (TemplateError, TypeError, ValueError, AttributeError, KeyError)
