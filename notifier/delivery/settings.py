"""``DeliverySettings``: the ``[delivery]`` section, its rules and channels, validated at start.

::

    [delivery]
    public_url = "https://notify.example.com"   # where unsubscribe links point

    [delivery.rules.default]                     # every category without a rule of its own
    webhook = { after_s = 600, until = "seen" }
    email = { after_s = 3600, until = "read" }

    [delivery.rules.social]
    email = { after_s = 1800, until = "read" }
    webhook = false                              # social groups never go to webhooks

    [delivery.digest]
    window_s = 3600                              # at most one email per user per hour

    [delivery.email]
    host = "smtp.example.com"
    port = 587
    security = "starttls"
    username = "notifier"                        # the password: NOTIFIER_SMTP_PASSWORD
    sender = "Notifier <noreply@example.com>"

With no rule at all, delivery is off and costs nothing: no timer is ever scheduled.
Secrets (the SMTP password, the key that signs unsubscribe links) come from the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, Literal

import msgspec

from notifier.categories import Categories
from notifier.delivery.model import CHANNELS, Channel
from notifier.errors import ConfigError, InvalidInput

Until = Literal["seen", "read"]
#: The rule table that applies to categories without one of their own.
DEFAULT = "default"


class Rule(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Deliver a group through a channel if it is still not ``until`` ``after_s`` seconds
    after it last changed."""

    after_s: Annotated[float, msgspec.Meta(ge=0, le=30 * 86_400)]
    until: Until = "seen"


class DigestSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    window_s: Annotated[float, msgspec.Meta(gt=0, le=7 * 86_400)] = 3_600
    """One email per user per window; windows start at multiples of this since the epoch."""
    max_groups: Annotated[int, msgspec.Meta(ge=1, le=500)] = 20
    """Groups listed in one email (the rest are counted: "and 12 more")."""


class EmailSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    host: str = "localhost"
    port: Annotated[int, msgspec.Meta(ge=1, le=65_535)] = 25
    security: Literal["none", "starttls", "tls"] = "none"
    username: str = ""
    password: str = ""
    """Only from NOTIFIER_SMTP_PASSWORD (a password in the file is refused)."""
    sender: str = "Notifier <notifier@localhost>"
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 30


class WebhookSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10
    """One POST's whole time (connect, send, answer)."""
    max_endpoints: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    allow_private: bool = False
    """Allow webhooks to loopback and private networks, by address or by what a name resolves
    to (tests, one-host setups; notifier.delivery.egress)."""


class _Raw(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    public_url: str = "http://localhost:8000"
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=50)] = 8
    min_backoff_ms: Annotated[int, msgspec.Meta(ge=1)] = 5_000
    max_backoff_ms: Annotated[int, msgspec.Meta(ge=1, le=7 * 86_400_000)] = 3_600_000
    retention_days: Annotated[float, msgspec.Meta(gt=0, le=365)] = 7
    unsubscribe_ttl_days: Annotated[float, msgspec.Meta(gt=0, le=3_650)] = 90
    rules: dict[str, dict[str, Rule | bool]] = msgspec.field(default_factory=dict)
    digest: DigestSettings = DigestSettings()
    email: EmailSettings = EmailSettings()
    webhook: WebhookSettings = WebhookSettings()


@dataclass(frozen=True)
class DeliverySettings:
    """Escalation rules and how each channel delivers (see the module docstring)."""

    rules: Mapping[str, Mapping[Channel, Rule | None]] = field(default_factory=dict)
    """Category (or ``default``) → channel → its rule; None: that channel is off for it."""
    public_url: str = "http://localhost:8000"
    max_attempts: int = 8
    """Attempts of one delivery before it is dead (a dead letter, replayable by the API)."""
    min_backoff_ms: int = 5_000
    max_backoff_ms: int = 3_600_000
    retention: timedelta = timedelta(days=7)
    unsubscribe_ttl: timedelta = timedelta(days=90)
    digest: DigestSettings = field(default_factory=DigestSettings)
    email: EmailSettings = field(default_factory=EmailSettings)
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    secret: str = field(default="", repr=False)
    """Signs unsubscribe links: NOTIFIER_SECRET, as for user tokens."""

    @property
    def enabled(self) -> bool:
        """Whether any rule sends anything (else no timer is ever scheduled)."""
        return any(rule is not None for table in self.rules.values() for rule in table.values())

    @property
    def lease(self) -> timedelta:
        """How long an attempt holds its delivery: longer than any attempt may run (an SMTP
        session is a few exchanges, each within ``email.timeout_s``)."""
        longest = max(self.webhook.timeout_s, self.email.timeout_s)
        return timedelta(seconds=longest * 3 + 5)

    def rule(self, category: str | None, channel: Channel) -> Rule | None:
        """The rule of ``channel`` for groups of ``category``: the category's own table if it
        names the channel, else the default table's."""
        own = self.rules.get(category) if category is not None else None
        if own is not None and channel in own:
            return own[channel]
        return self.rules.get(DEFAULT, {}).get(channel)

    def channels(self) -> list[Channel]:
        """Channels some rule uses."""
        used = {c for table in self.rules.values() for c, r in table.items() if r is not None}
        return [c for c in CHANNELS if c in used]

    @classmethod
    def from_mapping(
        cls, raw: Mapping[str, Any], env: Mapping[str, str], categories: Categories
    ) -> DeliverySettings:
        if "password" in raw.get("email", {}):
            raise ConfigError("delivery.email.password: set NOTIFIER_SMTP_PASSWORD instead")
        try:
            parsed = msgspec.convert(raw, _Raw)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"delivery: {exc}") from None
        rules: dict[str, dict[Channel, Rule | None]] = {}
        for name, table in parsed.rules.items():
            if name != DEFAULT:
                try:
                    categories.check(name, f"delivery.rules.{name}")
                except InvalidInput as exc:
                    raise ConfigError(f"delivery.rules.{name}: {exc.message}") from None
            unknown = set(table) - set(CHANNELS)
            if unknown:
                raise ConfigError(
                    f"delivery.rules.{name}: unknown channel(s) {sorted(unknown)} "
                    f"(one of {', '.join(CHANNELS)})"
                )
            found: dict[Channel, Rule | None] = {}
            for channel in CHANNELS:
                if channel not in table:
                    continue
                rule = table[channel]
                if rule is True:
                    raise ConfigError(
                        f"delivery.rules.{name}.{channel}: a rule table or false, not true"
                    )
                found[channel] = rule if isinstance(rule, Rule) else None
            rules[name] = found
        if parsed.min_backoff_ms > parsed.max_backoff_ms:
            raise ConfigError("delivery.min_backoff_ms must not exceed delivery.max_backoff_ms")
        email = msgspec.structs.replace(
            parsed.email, password=env.get("NOTIFIER_SMTP_PASSWORD", "")
        )
        settings = cls(
            rules=rules,
            public_url=env.get("NOTIFIER_PUBLIC_URL", parsed.public_url).rstrip("/"),
            max_attempts=parsed.max_attempts,
            min_backoff_ms=parsed.min_backoff_ms,
            max_backoff_ms=parsed.max_backoff_ms,
            retention=timedelta(days=parsed.retention_days),
            unsubscribe_ttl=timedelta(days=parsed.unsubscribe_ttl_days),
            digest=parsed.digest,
            email=email,
            webhook=parsed.webhook,
            secret=env.get("NOTIFIER_SECRET", ""),
        )
        if "email" in settings.channels() and not settings.secret:
            raise ConfigError(
                "email rules need NOTIFIER_SECRET (it signs the digests' unsubscribe links)"
            )
        return settings
