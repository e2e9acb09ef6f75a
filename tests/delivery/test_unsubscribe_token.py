"""Unsubscribe tokens: they name their user until they expire, and only for unsubscribing."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from notifier.delivery.settings import DeliverySettings
from notifier.delivery.unsubscribe import (
    AUDIENCE,
    InvalidUnsubscribeToken,
    read_unsubscribe_token,
    unsubscribe_token,
    unsubscribe_url,
)
from notifier.errors import ConfigError, InvalidInput
from notifier.web.auth import Unauthorized, UserTokens

SECRET = "s" * 40
SETTINGS = DeliverySettings(
    public_url="https://notify.example.com/", secret=SECRET, unsubscribe_ttl=timedelta(days=90)
)
NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)


def test_a_token_names_its_user_until_it_expires() -> None:
    token = unsubscribe_token("bo@corp", SETTINGS, NOW)
    assert read_unsubscribe_token(token, SETTINGS, NOW) == "bo@corp"
    almost = NOW + timedelta(days=90) - timedelta(seconds=1)
    assert read_unsubscribe_token(token, SETTINGS, almost) == "bo@corp"
    with pytest.raises(InvalidUnsubscribeToken, match="expired"):
        read_unsubscribe_token(token, SETTINGS, NOW + timedelta(days=90))


def test_the_url_points_at_the_public_unsubscribe_route() -> None:
    url = urlsplit(unsubscribe_url("bo", SETTINGS, NOW))
    assert (url.scheme, url.netloc, url.path) == ("https", "notify.example.com", "/v1/unsubscribe")
    [token] = parse_qs(url.query)["token"]
    assert read_unsubscribe_token(token, SETTINGS, NOW) == "bo"


def test_a_token_of_another_secret_or_altered_is_refused() -> None:
    token = unsubscribe_token("bo", SETTINGS, NOW)
    other = DeliverySettings(secret="t" * 40)
    with pytest.raises(InvalidUnsubscribeToken, match="not valid"):
        read_unsubscribe_token(token, other, NOW)
    head, _payload, signature = token.split(".")
    forged_claims = {"sub": "ana", "aud": AUDIENCE, "exp": 4_000_000_000}
    forged = jwt.encode(forged_claims, "g" * 40, algorithm="HS256").split(".")[1]
    for bad in (f"{head}.{forged}.{signature}", token[:-2], "not-a-token", "a.b.c"):
        with pytest.raises(InvalidUnsubscribeToken, match="not valid"):
            read_unsubscribe_token(bad, SETTINGS, NOW)
    # "alg": "none" is never accepted.
    unsigned = jwt.encode(forged_claims, None, algorithm="none")
    with pytest.raises(InvalidUnsubscribeToken, match="not valid"):
        read_unsubscribe_token(unsigned, SETTINGS, NOW)


def test_a_user_token_does_not_unsubscribe_and_an_unsubscribe_token_opens_no_feed() -> None:
    tokens = UserTokens(SECRET, 3600, 86_400)
    user_token, _ = tokens.issue("bo", 3600)
    with pytest.raises(InvalidUnsubscribeToken, match="not valid"):
        read_unsubscribe_token(user_token, SETTINGS)
    with pytest.raises(Unauthorized):
        tokens.verify(unsubscribe_token("bo", SETTINGS))
    # Not even signed with the raw secret for the unsubscribe audience: the key is derived.
    raw = jwt.encode({"sub": "bo", "aud": AUDIENCE, "exp": 4_000_000_000}, SECRET, "HS256")
    with pytest.raises(InvalidUnsubscribeToken, match="not valid"):
        read_unsubscribe_token(raw, SETTINGS, NOW)


def test_missing_tokens_secrets_and_bad_users_are_refused() -> None:
    for missing in (None, ""):
        with pytest.raises(InvalidUnsubscribeToken, match="no unsubscribe token"):
            read_unsubscribe_token(missing, SETTINGS, NOW)
    unsigned = DeliverySettings()
    with pytest.raises(InvalidUnsubscribeToken, match="does not sign"):
        read_unsubscribe_token(unsubscribe_token("bo", SETTINGS, NOW), unsigned, NOW)
    with pytest.raises(ConfigError):
        unsubscribe_token("bo", unsigned, NOW)
    with pytest.raises(InvalidInput):
        unsubscribe_token("not a user id", SETTINGS, NOW)


def test_the_key_is_derived_as_documented_and_claims_are_checked() -> None:
    key = hmac.new(SECRET.encode(), b"notifier unsubscribe", hashlib.sha256).digest()
    later = int((NOW + timedelta(days=1)).timestamp())
    good = jwt.encode({"sub": "bo", "aud": AUDIENCE, "exp": later}, key, "HS256")
    assert read_unsubscribe_token(good, SETTINGS, NOW) == "bo"
    for claims in (
        {"sub": "not a user id", "aud": AUDIENCE, "exp": later},
        {"sub": ["bo"], "aud": AUDIENCE, "exp": later},
        {"sub": "bo", "aud": AUDIENCE},
        {"sub": "bo", "exp": later},
        {"sub": "bo", "aud": "notifier", "exp": later},
        {"aud": AUDIENCE, "exp": later},
        {"sub": "bo", "aud": AUDIENCE, "exp": "tomorrow"},
    ):
        with pytest.raises(InvalidUnsubscribeToken, match="not valid"):
            read_unsubscribe_token(jwt.encode(claims, key, "HS256"), SETTINGS, NOW)
