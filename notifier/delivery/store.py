"""``DeliveryStore``: where delivery decisions, their marks and webhook endpoints are kept.

One protocol, three backends (memory, Redis, Cassandra), opened on the connection of the
feed storage (``deliveries_for``) and held to one contract (tests/storage/
test_contract_deliveries.py). What every backend guarantees:

- ``claim`` is a compare-and-set: of any number of concurrent claims of one delivery id,
  exactly one creates it, and the marks given with it are written in the same atomic step
  (Redis: one script on one hash slot; Cassandra: one conditional batch on one partition;
  memory: one lock). The others get the stored delivery back, unchanged.
- ``begin`` starts an attempt only on a pending delivery whose lease has run out, and of
  concurrent ``begin`` calls exactly one wins: no two attempts of one delivery overlap while
  their leases last.
- ``finish`` records an attempt's outcome only if no newer attempt has started since.
- Deliveries and marks are kept ``retention`` (TTL) after they were last written; endpoints
  until deleted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from weakref import WeakKeyDictionary

from notifier.delivery.model import Delivery, Endpoint, Outcome, Status

if TYPE_CHECKING:
    from notifier.storage.base import Storage

#: How long deliveries and marks are kept unless configured (``delivery.retention_days``).
RETENTION = timedelta(days=7)


class DeliveryStore(Protocol):
    """Delivery decisions and endpoints; see the module docstring for the guarantees."""

    # -- endpoints -------------------------------------------------------------------------
    async def put_endpoint(self, endpoint: Endpoint) -> None:
        """Create or replace an endpoint (by id)."""

    async def endpoints(self) -> list[Endpoint]:
        """Every endpoint, by id."""

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        """Forget an endpoint; False when there was none (its deliveries stay listed)."""

    # -- deliveries ------------------------------------------------------------------------
    async def claim(
        self, delivery: Delivery, marks: Mapping[str, str] | None = None
    ) -> tuple[Delivery, bool]:
        """Store ``delivery`` unless one with its id exists in its scope, and with it set
        ``marks`` (name → value) of ``delivery.scope``, atomically. Returns the stored
        delivery and whether this call created it (when not, no mark was written)."""

    async def marks(self, scope: str, names: Sequence[str]) -> dict[str, str]:
        """The marks of ``scope`` among ``names`` that are set."""

    async def get(self, scope: str, delivery_id: str) -> Delivery | None:
        """A delivery by scope and id; None when unknown (or past retention)."""

    async def begin(self, scope: str, delivery_id: str, now: datetime, lease_until: datetime
                    ) -> Delivery | None:  # fmt: skip
        """Start an attempt: if the delivery is pending and its lease ended (``lease_until``
        at or before ``now``), count the attempt, hold the lease until ``lease_until`` and
        return the updated delivery; else None (unknown, delivered, dead, or leased)."""

    async def finish(self, scope: str, delivery_id: str, attempt: int, outcome: Outcome) -> bool:
        """Record the outcome of attempt number ``attempt`` (status, error, ``updated_at``
        and, when delivered, ``delivered_at``) and end its lease, unless another attempt
        started since (then nothing changes and False is returned)."""

    async def replay(self, scope: str, delivery_id: str, now: datetime) -> Delivery | None:
        """Make a delivery pending again whatever its status (attempts kept, ``updated_at``
        = now); the lease of an attempt still running is kept, so the replay's attempt waits
        for it rather than overlapping it. None when unknown."""

    async def list(
        self,
        target: str,
        *,
        limit: int,
        before: str | None = None,
        status: Status | None = None,
    ) -> list[Delivery]:
        """Deliveries to ``target``, newest id first, ids below ``before``, only ``status``
        ones when given: at most ``limit``, and all there are when fewer."""


_MEMORY: WeakKeyDictionary[Any, Any] = WeakKeyDictionary()


def deliveries_for(storage: Storage, retention: timedelta = RETENTION) -> DeliveryStore:
    """The delivery store living beside ``storage``, on its connection and key prefix."""
    from notifier.storage.memory import MemoryStorage

    if isinstance(storage, MemoryStorage):
        from notifier.delivery.memory_store import MemoryDeliveries

        # One per storage: the web API and the in-process workers must share it.
        found = _MEMORY.get(storage)
        if found is None:
            found = _MEMORY[storage] = MemoryDeliveries()
        return found
    from notifier.storage.redis import RedisStorage

    if isinstance(storage, RedisStorage):
        from notifier.delivery.redis_store import RedisDeliveries

        return RedisDeliveries(storage.client, storage.prefix, retention)
    from notifier.storage.cassandra import CassandraStorage

    if isinstance(storage, CassandraStorage):
        from notifier.delivery.cassandra_store import CassandraDeliveries

        return CassandraDeliveries(storage.conn, storage.prefix, retention)
    raise TypeError(f"no delivery store for a {type(storage).__name__}")
