"""The delivery store of the embedded backend: dicts under one lock.

Real code held to the same contract as Redis and Cassandra (one lock makes every method
atomic, also across dramatiq's in-process worker threads). It keeps everything for the life
of the process: retention matters to servers that run for weeks, which use Redis or Cassandra.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime

import msgspec

from notifier.delivery.model import EPOCH, Delivery, Endpoint, Outcome, Status


class MemoryDeliveries:
    """``DeliveryStore`` in process memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._endpoints: dict[str, Endpoint] = {}
        self._deliveries: dict[tuple[str, str], Delivery] = {}
        self._marks: dict[str, dict[str, str]] = defaultdict(dict)
        self._log: dict[str, list[tuple[str, str]]] = defaultdict(list)  # (id, scope) ascending

    async def put_endpoint(self, endpoint: Endpoint) -> None:
        with self._lock:
            self._endpoints[endpoint.id] = endpoint

    async def endpoints(self) -> list[Endpoint]:
        with self._lock:
            return [self._endpoints[k] for k in sorted(self._endpoints)]

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        with self._lock:
            return self._endpoints.pop(endpoint_id, None) is not None

    async def claim(
        self, delivery: Delivery, marks: Mapping[str, str] | None = None
    ) -> tuple[Delivery, bool]:
        key = (delivery.scope, delivery.id)
        with self._lock:
            stored = self._deliveries.get(key)
            if stored is not None:
                return stored, False
            self._deliveries[key] = delivery
            self._marks[delivery.scope].update(marks or {})
            log = self._log[delivery.target]
            entry = (delivery.id, delivery.scope)
            at = bisect.bisect_left(log, entry)
            if at == len(log) or log[at] != entry:
                log.insert(at, entry)
            return delivery, True

    async def marks(self, scope: str, names: Sequence[str]) -> dict[str, str]:
        with self._lock:
            held = self._marks.get(scope, {})
            return {n: held[n] for n in names if n in held}

    async def get(self, scope: str, delivery_id: str) -> Delivery | None:
        with self._lock:
            return self._deliveries.get((scope, delivery_id))

    async def begin(
        self, scope: str, delivery_id: str, now: datetime, lease_until: datetime
    ) -> Delivery | None:
        with self._lock:
            stored = self._deliveries.get((scope, delivery_id))
            if stored is None or stored.status != "pending" or stored.lease_until > now:
                return None
            started = msgspec.structs.replace(
                stored, attempts=stored.attempts + 1, lease_until=lease_until
            )
            self._deliveries[(scope, delivery_id)] = started
            return started

    async def finish(self, scope: str, delivery_id: str, attempt: int, outcome: Outcome) -> bool:
        with self._lock:
            stored = self._deliveries.get((scope, delivery_id))
            if stored is None or stored.attempts != attempt:
                return False
            self._deliveries[(scope, delivery_id)] = msgspec.structs.replace(
                stored,
                status=outcome.status,
                lease_until=EPOCH,
                last_error=outcome.error,
                updated_at=outcome.at,
                delivered_at=outcome.at if outcome.status == "delivered" else stored.delivered_at,
            )
            return True

    async def replay(self, scope: str, delivery_id: str, now: datetime) -> Delivery | None:
        with self._lock:
            stored = self._deliveries.get((scope, delivery_id))
            if stored is None:
                return None
            again = msgspec.structs.replace(stored, status="pending", updated_at=now)
            self._deliveries[(scope, delivery_id)] = again
            return again

    async def list(
        self,
        target: str,
        *,
        limit: int,
        before: str | None = None,
        status: Status | None = None,
    ) -> list[Delivery]:
        with self._lock:
            log = self._log.get(target, [])
            end = len(log) if before is None else bisect.bisect_left(log, (before, ""))
            found: list[Delivery] = []
            for delivery_id, scope in reversed(log[:end]):
                if len(found) >= limit:
                    break
                stored = self._deliveries.get((scope, delivery_id))
                if stored is not None and (status is None or stored.status == status):
                    found.append(stored)
            return found
