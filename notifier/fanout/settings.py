"""``FanoutSettings``: every knob of fanout, named, bounded and defaulted in one place.

Read from the ``[fanout]`` TOML section (unknown keys are errors) with ``NOTIFIER_BROKER_URL``
from the environment on top; see docs/fanout.md for what each setting changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from notifier.errors import ConfigError
from notifier.storage.redis_urls import parse_redis_url

#: dramatiq's Redis broker refuses delays of 7 days or more.
_MAX_DELAY_S = 7 * 86_400 - 1
_QUEUE = msgspec.Meta(pattern=r"^[a-zA-Z_][a-zA-Z0-9._-]{0,63}$")


class FanoutSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How activities travel from an actor to their followers' feeds."""

    broker_url: str | None = None
    """``redis://…`` for dramatiq's Redis broker, ``memory://`` for the in-process broker;
    None picks: the storage's Redis when storage is Redis, in-process for memory storage."""
    chunk_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500
    """Followers per chunk job: one batched storage call per fanout group per chunk (on
    Redis, scripts of at most 500 feeds each). A few hundred by default (fine-grained retries
    and priorities); 1,000 writes ~25 % more feeds/s at 10,000 followers (docs/fanout.md)."""
    backfill_default: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 100
    """Activities a new follow copies from the target's own feed unless told otherwise."""
    backfill_max: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 1_000
    """The most a follow may ask to copy."""
    celebrity_threshold: Annotated[int, msgspec.Meta(ge=1)] = 100_000
    """Above this many followers an actor's fanout is spread out in slices on the LOW queue."""
    celebrity_window: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 10
    """Chunks one slice of a celebrity's fanout enqueues before queueing its continuation."""
    active_window_s: Annotated[int, msgspec.Meta(ge=1)] = 86_400
    """Followers seen within this many seconds count as active: their chunks go HIGH."""
    high_queue: Annotated[str, _QUEUE] = "notifier.high"
    low_queue: Annotated[str, _QUEUE] = "notifier.low"
    timer_queue: Annotated[str, _QUEUE] = "notifier.timers"
    """Queue of timer jobs (``notifier.fanout.timers``): apart from HIGH and LOW, so that
    waiting for the fanout queues to drain never waits for a timer."""
    delivery_queue: Annotated[str, _QUEUE] = "notifier.deliveries"
    """Queue of delivery attempts (webhooks, email digests; notifier.delivery): apart from
    the others, so a slow receiver holds up no fanout job and no timer."""
    timer_max_delay_s: Annotated[int, msgspec.Meta(ge=1, le=_MAX_DELAY_S)] = 3_600
    """Longest single delay of a timer (NOTIFIER_TIMER_MAX_DELAY_S). A worker holds a
    delayed message in memory until it is due; a timer due later is sent again when this
    runs out, so no worker holds one longer."""
    namespace: Annotated[str, _QUEUE] = "notifier"
    """Prefix of the broker's Redis keys (dramatiq's ``namespace``)."""
    threads: Annotated[int, msgspec.Meta(ge=1, le=1_000)] = 8
    """Worker threads per worker process (and for the in-process worker): jobs run at once."""
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=100)] = 10
    """Failed jobs are retried this many times with backoff, then dead-lettered."""
    min_backoff_ms: Annotated[int, msgspec.Meta(ge=1)] = 1_000
    max_backoff_ms: Annotated[int, msgspec.Meta(ge=1, le=7 * 86_400_000)] = 600_000
    dead_letter_ttl_s: Annotated[int, msgspec.Meta(ge=60)] = 7 * 86_400
    """How long dead-lettered jobs are kept by the Redis broker for inspection and requeueing."""
    time_limit_ms: Annotated[int, msgspec.Meta(ge=1_000)] = 300_000
    """A job running longer than this is interrupted (and retried)."""
    outage_wait_ms: Annotated[int, msgspec.Meta(ge=0)] = 30_000
    """A job that finds storage or the broker unreachable retries in place for this long
    before failing (then dramatiq's retries take over); below ``time_limit_ms``."""
    heartbeat_timeout_ms: Annotated[int, msgspec.Meta(ge=500)] = 10_000
    """A worker silent this long is dead: its unacknowledged jobs go back to their queues.
    Live workers beat every ``sweep_interval_ms`` however busy they are."""
    sweep_interval_ms: Annotated[int, msgspec.Meta(ge=100, le=60_000)] = 2_000
    """How often each worker beats and looks for dead workers' jobs to put back: a killed
    worker's jobs come back within about ``heartbeat_timeout_ms`` + this."""
    maintenance_chance: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 1_000
    """Broker calls (per million) that also run dramatiq's own maintenance pass (its default),
    besides the sweeps."""
    metrics_listen: str = ""
    """``host:port`` where a worker serves its Prometheus metrics (``/metrics``), or empty
    for none; NOTIFIER_WORKER_METRICS_LISTEN. Several workers on one host take consecutive
    ports from this one. No credential guards it: bind it to a private address."""
    poll_ms: Annotated[int, msgspec.Meta(ge=10, le=60_000)] = 100
    """Longest wait of an idle queue consumer. Enqueued jobs wake it at once (the Redis
    broker's doorbell); this bounds how late other arrivals (requeued jobs) are seen."""

    def __post_init__(self) -> None:
        if self.backfill_default > self.backfill_max:
            raise ValueError("backfill_default must not exceed backfill_max")
        if self.min_backoff_ms > self.max_backoff_ms:
            raise ValueError("min_backoff_ms must not exceed max_backoff_ms")
        if len({self.high_queue, self.low_queue, self.timer_queue}) < 3:
            raise ValueError("high_queue, low_queue and timer_queue must differ")
        if self.outage_wait_ms >= self.time_limit_ms:
            raise ValueError("outage_wait_ms must be below time_limit_ms")
        if self.sweep_interval_ms * 2 > self.heartbeat_timeout_ms:
            raise ValueError("sweep_interval_ms must be at most half of heartbeat_timeout_ms")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], env: Mapping[str, str]) -> FanoutSettings:
        """From the ``[fanout]`` table, then the environment (``NOTIFIER_BROKER_URL``,
        ``NOTIFIER_WORKER_METRICS_LISTEN``, ``NOTIFIER_TIMER_MAX_DELAY_S``); ConfigError
        names the key."""
        table = dict(raw)
        delay = env.get("NOTIFIER_TIMER_MAX_DELAY_S")
        if delay is not None:
            try:
                table["timer_max_delay_s"] = int(delay)
            except ValueError:
                raise ConfigError(
                    f"fanout.timer_max_delay_s (NOTIFIER_TIMER_MAX_DELAY_S): {delay!r} is not "
                    "a whole number of seconds"
                ) from None
        try:
            settings = msgspec.convert(table, cls)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"fanout: {exc}") from None
        url = env.get("NOTIFIER_BROKER_URL")
        if url:
            settings = msgspec.structs.replace(settings, broker_url=url)
        listen = env.get("NOTIFIER_WORKER_METRICS_LISTEN")
        if listen is not None:
            settings = msgspec.structs.replace(settings, metrics_listen=listen)
        if settings.metrics_listen:
            from notifier.fanout.observe import parse_listen

            try:
                parse_listen(settings.metrics_listen)
            except ValueError as exc:
                raise ConfigError(f"fanout.metrics_listen: {exc}") from None
        url = settings.broker_url
        if url is not None and url != "memory://":
            target = parse_redis_url(url, "fanout.broker_url (NOTIFIER_BROKER_URL)")
            if target.cluster:
                raise ConfigError(
                    "fanout.broker_url (NOTIFIER_BROKER_URL): dramatiq's Redis broker does not "
                    "run on a Redis Cluster; give it a redis:// or redis+sentinel:// server"
                )
        return settings
