"""Notification categories: which tab an activity belongs to, and which ones cannot be muted.

An activity names its ``category`` or gets its verb's default from configuration::

    [categories.billing]
    critical = true            # users cannot mute it
    verbs = ["invoice"]        # activities with these verbs default to it

    [categories.social]
    verbs = ["like", "follow", "comment"]

The category is resolved once, when the activity is created, and stored with it: changing the
configuration later does not move old notifications between tabs. It is also part of the
activity's group key (``category:key``), so one group never mixes categories and a group's
category is the category of any of its activities.

With no ``[categories]`` table, any well-formed name is accepted; with one, only the names it
declares, so a typo is a 422 instead of a tab nobody shows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from notifier.errors import ConfigError, InvalidInput

CATEGORY_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class Category:
    """One declared category."""

    name: str
    critical: bool = False
    """Critical categories cannot be muted (security alerts, billing, legal notices)."""
    verbs: tuple[str, ...] = ()
    """Verbs whose activities default to this category."""


class Categories:
    """The declared categories and the verb defaults they imply."""

    def __init__(self, categories: Iterable[Category] = ()) -> None:
        self._by_name: dict[str, Category] = {}
        self._by_verb: dict[str, str] = {}
        for category in categories:
            if not CATEGORY_NAME.match(category.name):
                raise ConfigError(
                    f"category name {category.name!r} must match [a-z][a-z0-9_-]{{0,31}}"
                )
            self._by_name[category.name] = category
            for verb in category.verbs:
                if verb in self._by_verb:
                    raise ConfigError(
                        f"verb {verb!r} defaults to both {self._by_verb[verb]!r} and "
                        f"{category.name!r}: give it one category"
                    )
                self._by_verb[verb] = category.name

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Categories:
        """From the ``[categories]`` TOML table."""
        found = []
        for name, table in raw.items():
            if not isinstance(table, Mapping):
                raise ConfigError(f"categories.{name} must be a table")
            unknown = set(table) - {"critical", "verbs"}
            if unknown:
                raise ConfigError(f"categories.{name}: unknown setting(s) {sorted(unknown)}")
            critical = table.get("critical", False)
            verbs = table.get("verbs", [])
            if not isinstance(critical, bool):
                raise ConfigError(f"categories.{name}.critical must be true or false")
            if not isinstance(verbs, list) or not all(isinstance(v, str) for v in verbs):
                raise ConfigError(f"categories.{name}.verbs must be a list of verb names")
            found.append(Category(name, critical, tuple(verbs)))
        return cls(found)

    def resolve(self, verb: str, explicit: str | None) -> str | None:
        """The category of an activity: the one it names (checked), else its verb's default."""
        if explicit is None:
            return self._by_verb.get(verb)
        if not isinstance(explicit, str) or not CATEGORY_NAME.match(explicit):
            raise InvalidInput("category", "must match [a-z][a-z0-9_-]{0,31}")
        if self._by_name and explicit not in self._by_name:
            known = ", ".join(sorted(self._by_name))
            raise InvalidInput("category", f"unknown category {explicit!r}; declared: {known}")
        return explicit

    def is_critical(self, name: str | None) -> bool:
        """Whether ``name`` is declared critical (never muted)."""
        category = self._by_name.get(name or "")
        return category is not None and category.critical

    def check(self, name: object, field: str = "category") -> str:
        """A category name a request may use (a filter, a preference), or InvalidInput."""
        if not isinstance(name, str) or not CATEGORY_NAME.match(name):
            raise InvalidInput(field, "must match [a-z][a-z0-9_-]{0,31}")
        if self._by_name and name not in self._by_name:
            raise InvalidInput(field, f"unknown category {name!r}")
        return name

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Category]:
        return iter(self._by_name.values())

    def __bool__(self) -> bool:
        return bool(self._by_name)
