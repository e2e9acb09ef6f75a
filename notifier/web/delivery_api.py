"""The server API of delivery: webhook endpoints, and the deliveries made to them and by email.

Endpoints are registered by the app's backend (API key), never by browsers. A secret is made
for each endpoint unless one is given, and shown once, in the answer that created it.
Deliveries are listed newest first per endpoint (or per user, for email digests) and any of
them can be replayed: a dead letter, or one the receiver says it lost. A replay sends the
same body under the same id.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated

import msgspec

from notifier.delivery.model import Delivery, Endpoint, Status
from notifier.delivery.signing import new_secret, secret_key
from notifier.delivery.webhooks import check_url
from notifier.errors import InvalidInput, NotFound
from notifier.model import check_user_id
from notifier.web.routing import Call
from notifier.web.routing import Endpoint as Route
from notifier.web.services import Services

#: Categories one endpoint may name.
MAX_CATEGORIES = 100
_DeliveryId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{42}$")]


class WebhookIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A new endpoint: where to POST, which categories (null or absent: all)."""

    url: str
    categories: list[str] | None = None
    description: Annotated[str, msgspec.Meta(max_length=500)] = ""
    secret: str | None = None
    """Your own ``whsec_``+base64 secret (at least 16 bytes); by default one is made."""


class WebhookPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Change an endpoint: only the fields given."""

    url: str | msgspec.UnsetType = msgspec.UNSET
    categories: list[str] | msgspec.UnsetType | None = msgspec.UNSET
    description: Annotated[str, msgspec.Meta(max_length=500)] | msgspec.UnsetType = msgspec.UNSET
    disabled: bool | msgspec.UnsetType = msgspec.UNSET


class WebhookOut(msgspec.Struct, kw_only=True):
    """An endpoint; ``secret`` only in the answer that created it."""

    id: str
    url: str
    categories: list[str] | None
    description: str
    disabled: bool
    created_at: datetime
    secret: str | None = None


class WebhooksOut(msgspec.Struct):
    endpoints: list[WebhookOut]


class DeletedWebhookOut(msgspec.Struct):
    deleted: str


class DeliveriesQuery(msgspec.Struct, forbid_unknown_fields=True):
    """Newest first; ``before``: the ``next`` of the previous page."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 50
    before: _DeliveryId | msgspec.UnsetType = msgspec.UNSET
    status: Status | msgspec.UnsetType = msgspec.UNSET
    """Not nullable in the schema: a fuzzer's "null" (or an empty value) for a query
    parameter is no parameter at all, which the server cannot tell from one left out."""


class DeliveryOut(msgspec.Struct, kw_only=True):
    """A delivery: what was decided (``payload``: the webhook body, or the digest's data),
    and how far it got."""

    id: str
    """The idempotency key: the ``webhook-id`` header of every attempt."""
    channel: str
    target: str
    user: str
    status: str
    attempts: int
    last_error: str
    created_at: datetime
    updated_at: datetime | None
    delivered_at: datetime | None
    payload: msgspec.Raw


class DeliveriesOut(msgspec.Struct):
    deliveries: list[DeliveryOut]
    next: str | None


def _endpoint_out(endpoint: Endpoint, *, with_secret: bool = False) -> WebhookOut:
    return WebhookOut(
        id=endpoint.id,
        url=endpoint.url,
        categories=sorted(endpoint.categories) if endpoint.categories is not None else None,
        description=endpoint.description,
        disabled=endpoint.disabled,
        created_at=endpoint.created_at,
        secret=endpoint.secret if with_secret else None,
    )


def _delivery_out(delivery: Delivery) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        channel=delivery.channel,
        target=delivery.target,
        user=delivery.user,
        status=delivery.status,
        attempts=delivery.attempts,
        last_error=delivery.last_error,
        created_at=delivery.created_at,
        updated_at=delivery.updated_at,
        delivered_at=delivery.delivered_at,
        payload=msgspec.Raw(delivery.payload),
    )


def delivery_endpoints(s: Services) -> list[Route]:
    """Every delivery endpoint of the server API, bound to this process's services."""
    escalation = s.fanout.escalation
    store = escalation.store
    settings = s.notifier.config.delivery

    def categories_of(raw: list[str] | None) -> frozenset[str] | None:
        if raw is None:
            return None
        if len(raw) > MAX_CATEGORIES:
            raise InvalidInput("categories", f"at most {MAX_CATEGORIES} categories")
        return frozenset(s.notifier.config.categories.check(name, "categories") for name in raw)

    def checked_secret(raw: str | None) -> str:
        if raw is None:
            return new_secret()
        try:
            secret_key(raw)
        except ValueError as exc:
            raise InvalidInput("secret", str(exc)) from None
        return raw

    async def find(endpoint_id: str) -> Endpoint:
        found = {e.id: e for e in await store.endpoints()}.get(endpoint_id)
        if found is None:
            raise NotFound(f"no webhook endpoint {endpoint_id!r}", field="endpoint_id")
        return found

    async def create(call: Call) -> msgspec.Struct:
        body: WebhookIn = call.body
        existing = await store.endpoints()
        if len(existing) >= settings.webhook.max_endpoints:
            raise InvalidInput(
                "url", f"at most {settings.webhook.max_endpoints} endpoints "
                "(delivery.webhook.max_endpoints)"
            )  # fmt: skip
        endpoint = Endpoint(
            id=f"ep_{secrets.token_hex(8)}",
            url=check_url(body.url, allow_private=settings.webhook.allow_private),
            secret=checked_secret(body.secret),
            categories=categories_of(body.categories),
            description=body.description,
            created_at=datetime.now(UTC),
        )
        await store.put_endpoint(endpoint)
        return _endpoint_out(endpoint, with_secret=True)

    async def list_all(call: Call) -> WebhooksOut:
        return WebhooksOut([_endpoint_out(e) for e in await store.endpoints()])

    async def read(call: Call) -> WebhookOut:
        return _endpoint_out(await find(call.path["endpoint_id"]))

    async def change(call: Call) -> WebhookOut:
        body: WebhookPatch = call.body
        endpoint = await find(call.path["endpoint_id"])
        changes: dict[str, object] = {}
        if body.url is not msgspec.UNSET:
            changes["url"] = check_url(body.url, allow_private=settings.webhook.allow_private)
        if body.categories is not msgspec.UNSET:
            changes["categories"] = categories_of(body.categories)
        if body.description is not msgspec.UNSET:
            changes["description"] = body.description
        if body.disabled is not msgspec.UNSET:
            changes["disabled"] = body.disabled
        changed = msgspec.structs.replace(endpoint, **changes)
        await store.put_endpoint(changed)
        return _endpoint_out(changed)

    async def delete(call: Call) -> DeletedWebhookOut:
        endpoint_id = call.path["endpoint_id"]
        if not await store.delete_endpoint(endpoint_id):
            raise NotFound(f"no webhook endpoint {endpoint_id!r}", field="endpoint_id")
        return DeletedWebhookOut(endpoint_id)

    async def page(target: str, query: DeliveriesQuery) -> DeliveriesOut:
        before = None if query.before is msgspec.UNSET else query.before
        status = None if query.status is msgspec.UNSET else query.status
        found = await store.list(target, limit=query.limit, before=before, status=status)
        nxt = found[-1].id if len(found) == query.limit else None
        return DeliveriesOut([_delivery_out(d) for d in found], nxt)

    async def webhook_deliveries(call: Call) -> DeliveriesOut:
        endpoint_id = call.path["endpoint_id"]
        return await page(endpoint_id, call.query)

    async def email_deliveries(call: Call) -> DeliveriesOut:
        user = check_user_id(call.path["user"], "user")
        return await page(user, call.query)

    def delivery_id(call: Call) -> str:
        found = call.path["delivery_id"]
        if len(found) != 42 or any(c not in "0123456789abcdef" for c in found):
            raise NotFound(f"no delivery {found!r}", field="delivery_id")
        return found

    async def one(scope: str, target: str, wanted: str) -> Delivery:
        found = await store.get(scope, wanted)
        if found is None or found.target != target:
            raise NotFound(f"no delivery {wanted!r}", field="delivery_id")
        return found

    async def webhook_delivery(call: Call) -> DeliveryOut:
        wanted = delivery_id(call)
        return _delivery_out(await one(wanted, call.path["endpoint_id"], wanted))

    async def email_delivery(call: Call) -> DeliveryOut:
        user = check_user_id(call.path["user"], "user")
        return _delivery_out(await one(user, user, delivery_id(call)))

    async def replay(scope: str, target: str, wanted: str) -> DeliveryOut:
        await one(scope, target, wanted)
        again = await escalation.replay(scope, wanted)
        if again is None:
            raise NotFound(f"no delivery {wanted!r}", field="delivery_id")
        return _delivery_out(again)

    async def replay_webhook(call: Call) -> DeliveryOut:
        wanted = delivery_id(call)
        return await replay(wanted, call.path["endpoint_id"], wanted)

    async def replay_email(call: Call) -> DeliveryOut:
        user = check_user_id(call.path["user"], "user")
        return await replay(user, user, delivery_id(call))

    tags = ("delivery",)
    hook = "/v1/webhooks/{endpoint_id}"
    return [
        Route("POST", "/v1/webhooks", create, "Register a webhook endpoint (its secret is "
              "shown once, here)", body=WebhookIn, response=WebhookOut, status=201, tags=tags),
        Route("GET", "/v1/webhooks", list_all, "Every webhook endpoint", response=WebhooksOut,
              tags=tags),
        Route("GET", hook, read, "One webhook endpoint", response=WebhookOut, errors=(404,),
              tags=tags),
        Route("PATCH", hook, change, "Change a webhook endpoint (url, categories, "
              "description, disabled)", body=WebhookPatch, response=WebhookOut, errors=(404,),
              tags=tags),
        Route("DELETE", hook, delete, "Delete a webhook endpoint", response=DeletedWebhookOut,
              errors=(404,), tags=tags),
        Route("GET", f"{hook}/deliveries", webhook_deliveries, "Deliveries to an endpoint, "
              "newest first", query=DeliveriesQuery, response=DeliveriesOut, tags=tags),
        Route("GET", f"{hook}/deliveries/{{delivery_id}}", webhook_delivery,
              "One delivery to an endpoint", response=DeliveryOut, errors=(404,), tags=tags),
        Route("POST", f"{hook}/deliveries/{{delivery_id}}/replay", replay_webhook,
              "Send a delivery again (same body, same id)", response=DeliveryOut,
              status=202, errors=(404,), tags=tags),
        Route("GET", "/v1/users/{user}/deliveries", email_deliveries, "A user's email "
              "digests, newest first", query=DeliveriesQuery, response=DeliveriesOut,
              tags=tags),
        Route("GET", "/v1/users/{user}/deliveries/{delivery_id}", email_delivery,
              "One email digest of a user", response=DeliveryOut, errors=(404,), tags=tags),
        Route("POST", "/v1/users/{user}/deliveries/{delivery_id}/replay", replay_email,
              "Send an email digest again", response=DeliveryOut, status=202, errors=(404,),
              tags=tags),
    ]  # fmt: skip
