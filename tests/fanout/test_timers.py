"""Timer jobs: their message form, their delays, and the setting that caps a delay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dramatiq
import msgspec
import pytest

from notifier.config import Config
from notifier.errors import ConfigError
from notifier.fanout.broker import _job_context
from notifier.fanout.timers import (
    Expire,
    Timer,
    decode_timer,
    delay_ms,
    describe,
    encode_timer,
    is_due,
    kind,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_a_timer_goes_through_a_message_and_back_unchanged() -> None:
    timer = Timer(at=NOW + timedelta(seconds=90), job=Expire(activity_id="01abc"))
    raw = encode_timer(timer)
    assert raw == {"at": "2026-11-30T12:01:30Z", "job": {"kind": "expire", "activity_id": "01abc"}}
    # As dramatiq's JSON encoder carries it.
    assert decode_timer(msgspec.json.decode(msgspec.json.encode(raw))) == timer
    assert kind(timer.job) == "expire"
    assert describe(timer) == "timer=expire at=2026-11-30T12:01:30+00:00 activity_id=01abc"


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"at": "2026-11-30T12:00:00Z", "job": {"kind": "nap", "activity_id": "a"}}, "kind"),
        ({"at": "2026-11-30T12:00:00", "job": {"kind": "expire", "activity_id": "a"}}, "at"),
        ({"at": "2026-11-30T12:00:00Z", "job": {"kind": "expire"}}, "activity_id"),
        ({"job": {"kind": "expire", "activity_id": "a"}}, "at"),
        (["not", "a", "timer"], "object"),
    ],
)
def test_a_message_that_is_no_timer_fails_to_decode_naming_what(raw: object, where: str) -> None:
    # A ValidationError: the timer actor dead-letters such a message at once.
    with pytest.raises(msgspec.ValidationError, match=where):
        decode_timer(raw)


def test_the_delay_runs_until_the_due_time_rounded_up_and_capped() -> None:
    assert delay_ms(NOW + timedelta(seconds=2), NOW, 3600) == 2000
    assert delay_ms(NOW + timedelta(microseconds=1), NOW, 3600) == 1  # never early
    assert delay_ms(NOW + timedelta(days=30), NOW, 3600) == 3_600_000
    assert delay_ms(NOW - timedelta(seconds=5), NOW, 3600) == 0  # overdue: at once


def test_a_timer_is_due_from_its_time_on() -> None:
    timer = Timer(at=NOW, job=Expire(activity_id="a"))
    assert not is_due(timer, NOW - timedelta(milliseconds=1))
    assert is_due(timer, NOW)
    assert is_due(timer, NOW + timedelta(days=1))


def test_a_failed_timer_is_logged_with_its_job() -> None:
    raw = encode_timer(Timer(at=NOW, job=Expire(activity_id="01abc")))

    message = dramatiq.Message(
        queue_name="notifier.timers", actor_name="notifier.timer", args=(raw,), kwargs={},
        options={"retries": 2}, message_id="m1",
    )  # fmt: skip
    assert _job_context(message) == (
        "message=m1 queue=notifier.timers job=notifier.timer at=2026-11-30T12:00:00Z "
        "kind=expire activity_id=01abc retries=2"
    )


def test_the_cap_is_a_setting_the_environment_overrides() -> None:
    assert Config().fanout.timer_max_delay_s == 3600
    assert Config().fanout.timer_queue == "notifier.timers"
    table = {"fanout": {"timer_max_delay_s": 60}}
    assert Config.from_mapping(table, env={}).fanout.timer_max_delay_s == 60
    env = {"NOTIFIER_TIMER_MAX_DELAY_S": "5"}
    assert Config.from_mapping(table, env=env).fanout.timer_max_delay_s == 5


@pytest.mark.parametrize(
    ("table", "env", "message"),
    [
        ({"timer_max_delay_s": 0}, {}, "timer_max_delay_s"),
        ({"timer_max_delay_s": 7 * 86_400}, {}, "timer_max_delay_s"),  # dramatiq's limit
        ({}, {"NOTIFIER_TIMER_MAX_DELAY_S": "1h"}, "NOTIFIER_TIMER_MAX_DELAY_S"),
        ({"timer_queue": "notifier.high"}, {}, "must differ"),
    ],
)
def test_bad_timer_settings_are_refused_naming_the_key(
    table: dict[str, object], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match="fanout") as error:
        Config.from_mapping({"fanout": table}, env=env)
    assert message in str(error.value)
