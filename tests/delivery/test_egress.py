"""Webhook egress: a name is resolved, and every address it resolves to checked, when the
POST connects (notifier.delivery.egress), not only as written when it is registered. A real
sender posts to a real receiver on loopback, by name and by address."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from notifier.delivery.egress import is_private
from notifier.delivery.settings import WebhookSettings
from notifier.delivery.signing import new_secret
from notifier.delivery.webhooks import WebhookFailed, WebhookSender
from tests.delivery.receiver import WebhookReceiver

DELIVERY_ID = "0" * 42


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    found = WebhookReceiver()
    await found.start()
    yield found
    await found.stop()


async def post(receiver: WebhookReceiver, url: str, *, allow_private: bool) -> int:
    secret = receiver.secrets.setdefault("/hook", new_secret())
    sender = WebhookSender(WebhookSettings(timeout_s=5, allow_private=allow_private))
    try:
        return await sender.post(url, secret, DELIVERY_ID, b'{"type": "test"}')
    finally:
        await sender.close()


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_a_name_or_address_on_loopback_is_refused_before_connecting(
    receiver: WebhookReceiver, host: str
) -> None:
    with pytest.raises(WebhookFailed) as failed:
        await post(receiver, f"http://{host}:{receiver.port}/hook", allow_private=False)
    assert f"{host} resolves to a private or loopback address" in failed.value.reason
    assert "delivery.webhook.allow_private" in failed.value.reason
    assert receiver.received == []  # refused before any connection


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_private_addresses_are_reached_when_allowed(
    receiver: WebhookReceiver, host: str
) -> None:
    status = await post(receiver, f"http://{host}:{receiver.port}/hook", allow_private=True)
    assert status == 200
    [got] = receiver.verified("/hook")
    assert got.delivery_id == DELIVERY_ID


async def test_a_name_that_does_not_resolve_fails_the_attempt() -> None:
    sender = WebhookSender(WebhookSettings(timeout_s=5))
    try:
        with pytest.raises(WebhookFailed) as failed:
            await sender.post("http://hooks.invalid/x", new_secret(), DELIVERY_ID, b"{}")
    finally:
        await sender.close()
    assert "hooks.invalid does not resolve" in failed.value.reason


@pytest.mark.parametrize(
    ("host", "private"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("192.168.1.1", True),
        ("100.64.0.1", True),  # carrier-grade NAT
        ("169.254.169.254", True),  # cloud metadata services
        ("0.0.0.0", True),
        ("224.0.0.1", True),
        ("::1", True),
        ("fe80::1", True),
        ("fd00::1", True),
        ("::ffff:127.0.0.1", True),  # IPv4-mapped loopback
        ("::ffff:10.0.0.1", True),
        ("localhost", True),
        ("api.localhost", True),
        ("93.184.216.34", False),
        ("8.8.8.8", False),
        ("::ffff:8.8.8.8", False),
        ("2606:4700:4700::1111", False),
        ("hooks.example.com", False),  # a name: what it resolves to is checked on connect
    ],
)
def test_which_hosts_are_private(host: str, private: bool) -> None:
    assert is_private(host) is private
