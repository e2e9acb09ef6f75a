"""The delivery store on Cassandra: one partition per scope, a compare-and-set per step.

Tables (``storage/cassandra_schema/005_deliveries.cql``; ``ns`` is the storage prefix):

- ``deliveries ((ns, scope), kind, name)``: a scope's deliveries (``kind = 'd'``, ``name`` =
  the id, ``body`` = the delivery as JSON, ``version`` = a fresh uuid per write) and its
  marks (``kind = 'm'``, ``name`` → ``mark``). TTL ``retention``, given by every write.
- ``delivery_log ((ns, target), id, scope)``, newest first: what ``list`` pages.
- ``webhook_endpoints ((ns), id)``: endpoints as JSON, kept until deleted.

Why each step is atomic. Every write to ``deliveries`` is a lightweight transaction (Paxos),
never a plain write, so Paxos orders all of them (plain writes would carry timestamps of
their own and could be ordered against a Paxos write by the clocks):

- ``claim`` is one conditional batch on the scope's partition: the delivery ``IF NOT
  EXISTS`` and its marks. Cassandra applies it whole or not at all; of concurrent claims
  exactly one applies, and a claim that does not apply writes no mark.
- ``begin``, ``finish`` and ``replay`` read the delivery at the serial consistency, decide
  in Python exactly as the memory backend does, and rewrite the whole delivery ``IF version
  = <the version read>`` with a new version. Of concurrent writers of one delivery one
  applies; the others read again and decide again. A condition on the fields a step checks
  (``status``, ``attempts``, ``lease_until``) would let it apply over a write that changed
  only others (a finish reported twice changes only the error and the time), and return a
  delivery other than the stored one. Rewriting the whole delivery also gives every cell
  the whole retention again: an update of some cells would refresh only theirs.

A write whose answer is lost (a timeout, ``CAS_WRITE_UNKNOWN``, a coordinator that died) is
settled by the next serial read, which completes such a proposal first: the version it finds
tells whether this call's write applied. A claim reports ``created`` from that version too.

The log row of a delivery is a plain insert in another partition (the target's), so it
cannot join the batch. It is written *before* each write of the delivery, with the same TTL:
a process dying between the two leaves a log row without a delivery (``list`` skips it, as
it skips rows whose delivery expired), never a delivery that ``list`` cannot find.

What it costs, in coordinator-replica exchanges, one after the other (Paxos v1, Cassandra's
default up to 5.0, as traced on 5.0.9): a conditional write takes four (prepare, read,
propose, commit), a serial read three (prepare, an empty proposal, read), a plain read or
write one.

- ``claim``: the log write, then the conditional batch: 5. A claim that loses reads the
  stored delivery serially: 8.
- ``begin``, ``finish``, ``replay``: a serial read, then (when the step applies) the log
  write and the conditional update: 8. A refused step (leased, delivered, a late attempt,
  unknown) is the serial read alone: 3. Each lost race costs another read and update.
- ``marks``: one serial read, 3 (the marks decide what the next claim covers); ``get``: 1;
  ``list``: a log slice per page (1), then the page's deliveries concurrently (1).

Partition sizes: a webhook delivery's partition holds that one delivery; a user's holds the
digests of the last ``retention`` (one per digest window) and one mark per group emailed in
it. A log partition holds a target's deliveries of the last ``retention``, about 100 bytes a
row: a webhook endpoint receiving one delivery a second keeps some 600,000 rows (60 MB) with
the default seven days. A status filter reads the log on until it has ``limit`` matches, so
listing a rare status may read that whole partition.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec
from cassandra.protocol import ErrorMessage

from notifier.delivery.model import (
    EPOCH,
    Delivery,
    Endpoint,
    Outcome,
    Status,
    decode_delivery,
    decode_endpoint,
    encode,
)
from notifier.delivery.store import RETENTION
from notifier.errors import Conflict
from notifier.storage.cassandra_session import (
    CAS_WRITE_UNKNOWN,
    COMMIT_ERRORS,
    Call,
    CassandraConnection,
    outcome_unknown,
)

log = logging.getLogger(__name__)

#: Log rows ``list`` reads a round trip when filtering by status (at least ``limit``, at
#: most ``MAX_PAGE``); without a filter it reads ``limit`` (at most ``MAX_PAGE``) a trip.
STATUS_PAGE = 100
MAX_PAGE = 1000

_TABLE = "{ks}.deliveries"
_RECORD = "WHERE ns = ? AND scope = ? AND kind = 'd' AND name = ?"
_LOG = "SELECT id, scope FROM {ks}.delivery_log WHERE ns = ? AND target = ?"
QUERIES = {
    "dl_claim": f"INSERT INTO {_TABLE} (ns, scope, kind, name, body, version) "
    "VALUES (?, ?, 'd', ?, ?, ?) IF NOT EXISTS USING TTL ?",
    "dl_mark": f"INSERT INTO {_TABLE} (ns, scope, kind, name, mark) VALUES (?, ?, 'm', ?, ?) "
    "USING TTL ?",
    "dl_update": f"UPDATE {_TABLE} USING TTL ? SET body = ?, version = ? {_RECORD} IF version = ?",
    "dl_get": f"SELECT body, version FROM {_TABLE} {_RECORD}",
    "dl_marks": f"SELECT name, mark FROM {_TABLE} WHERE ns = ? AND scope = ? AND kind = 'm' "
    "AND name IN ?",
    "dl_note": "INSERT INTO {ks}.delivery_log (ns, target, id, scope) VALUES (?, ?, ?, ?) "
    "USING TTL ?",
    "dl_log_head": f"{_LOG} LIMIT ?",
    "dl_log_below": f"{_LOG} AND (id, scope) < (?, ?) LIMIT ?",
    "ep_put": "INSERT INTO {ks}.webhook_endpoints (ns, id, body) VALUES (?, ?, ?)",
    "ep_all": "SELECT body FROM {ks}.webhook_endpoints WHERE ns = ?",
    "ep_has": "SELECT id FROM {ks}.webhook_endpoints WHERE ns = ? AND id = ?",
    "ep_delete": "DELETE FROM {ks}.webhook_endpoints WHERE ns = ? AND id = ?",
}

Change = Callable[[Delivery], Delivery | None]
"""What a step makes of the stored delivery; None: nothing to write (the step is refused)."""
Versioned = tuple[Delivery, uuid.UUID]


async def _backoff(attempt: int) -> None:
    """Jittered, growing pause before a contended step tries again (as aggregated feeds do)."""
    await asyncio.sleep(random.uniform(0, min(0.2, 0.002 * 2**attempt)))


class CassandraDeliveries:
    """``DeliveryStore`` on Cassandra, in the namespace ``prefix``; see the module docstring."""

    def __init__(
        self, conn: CassandraConnection, prefix: str, retention: timedelta = RETENTION
    ) -> None:
        self.conn = conn
        self.prefix = prefix
        self.ttl = max(1, int(retention.total_seconds()))
        """Seconds every delivery, mark and log row is kept after its last write."""

    # -- endpoints -------------------------------------------------------------------------
    async def put_endpoint(self, endpoint: Endpoint) -> None:
        await self.conn.run("ep_put", self.prefix, endpoint.id, encode(endpoint))

    async def endpoints(self) -> list[Endpoint]:
        return [decode_endpoint(row[0]) for row in await self.conn.run("ep_all", self.prefix)]

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        """A read, then a plain delete: endpoints are written without Paxos, and a conditional
        delete among plain writes would be ordered by clocks anyway. Two concurrent deletes
        of one endpoint may therefore both answer True."""
        if not await self.conn.run("ep_has", self.prefix, endpoint_id):
            return False
        await self.conn.run("ep_delete", self.prefix, endpoint_id)
        return True

    # -- deliveries ------------------------------------------------------------------------
    async def claim(
        self, delivery: Delivery, marks: Mapping[str, str] | None = None
    ) -> tuple[Delivery, bool]:
        ns, scope, ttl = self.prefix, delivery.scope, self.ttl
        attempts = self.conn.settings.cas_attempts
        await self._note(delivery)
        version = uuid.uuid4()
        calls: list[Call] = [("dl_claim", (ns, scope, delivery.id, encode(delivery), version, ttl))]
        calls += [
            ("dl_mark", (ns, scope, name, value, ttl)) for name, value in (marks or {}).items()
        ]
        for attempt in range(attempts):
            try:
                rows = await self.conn.run_batch(calls, idempotent=False)
                if rows[0][0]:
                    return delivery, True
            except COMMIT_ERRORS as exc:
                if not outcome_unknown(exc):
                    raise
                log.warning(
                    "claim outcome unknown, re-reading delivery=%s error=%s", delivery.id, exc
                )
            found = await self._read_serial(scope, delivery.id)
            if found is not None:
                stored, stored_version = found
                return stored, stored_version == version
            await _backoff(attempt)  # not applied, and gone already (expired): claim again
        raise Conflict(f"delivery {delivery.id!r} stayed contended for {attempts} attempts")

    async def marks(self, scope: str, names: Sequence[str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return {}
        rows = await self._serial("dl_marks", self.prefix, scope, wanted)
        found = {row[0]: row[1] for row in rows}
        return {name: found[name] for name in names if name in found}

    async def get(self, scope: str, delivery_id: str) -> Delivery | None:
        rows = await self.conn.run("dl_get", self.prefix, scope, delivery_id)
        return decode_delivery(rows[0][0]) if rows else None

    async def begin(
        self, scope: str, delivery_id: str, now: datetime, lease_until: datetime
    ) -> Delivery | None:
        def start(stored: Delivery) -> Delivery | None:
            if stored.status != "pending" or stored.lease_until > now:
                return None
            return msgspec.structs.replace(
                stored, attempts=stored.attempts + 1, lease_until=lease_until
            )

        return await self._update(scope, delivery_id, start)

    async def finish(self, scope: str, delivery_id: str, attempt: int, outcome: Outcome) -> bool:
        def record(stored: Delivery) -> Delivery | None:
            if stored.attempts != attempt:
                return None
            delivered = outcome.status == "delivered"
            return msgspec.structs.replace(
                stored,
                status=outcome.status,
                lease_until=EPOCH,
                last_error=outcome.error,
                updated_at=outcome.at,
                delivered_at=outcome.at if delivered else stored.delivered_at,
            )

        return await self._update(scope, delivery_id, record) is not None

    async def replay(self, scope: str, delivery_id: str, now: datetime) -> Delivery | None:
        def again(stored: Delivery) -> Delivery:
            return msgspec.structs.replace(stored, status="pending", updated_at=now)

        return await self._update(scope, delivery_id, again)

    # -- compare-and-set -------------------------------------------------------------------
    async def _serial(self, name: str, *params: Any) -> list[Any]:
        """A read at the serial consistency. One that another ballot cut short (it completes
        a proposal in flight first: ``CAS_WRITE_UNKNOWN``) is read again."""
        attempts = self.conn.settings.cas_attempts
        for attempt in range(attempts):
            try:
                return await self.conn.run(name, *params, serial=True)
            except ErrorMessage as exc:
                if exc.code != CAS_WRITE_UNKNOWN:
                    raise
                log.debug("serial read contended, reading again query=%s: %s", name, exc)
                await _backoff(attempt)
        raise Conflict(f"serial read {name} stayed contended for {attempts} attempts")

    async def _read_serial(self, scope: str, delivery_id: str) -> Versioned | None:
        rows = await self._serial("dl_get", self.prefix, scope, delivery_id)
        return (decode_delivery(rows[0][0]), rows[0][1]) if rows else None

    async def _update(self, scope: str, delivery_id: str, change: Change) -> Delivery | None:
        """Apply ``change`` to the stored delivery and return what was written: a serial read,
        then one conditional update on the version read, again until one applies or
        ``change`` refuses (None). Raises Conflict after ``cas_attempts`` lost races."""
        ns, attempts = self.prefix, self.conn.settings.cas_attempts
        pending: Versioned | None = None
        """The last write sent whose outcome is unknown, with its version."""
        noted = False
        for attempt in range(attempts):
            found = await self._read_serial(scope, delivery_id)
            if found is None:
                return None
            stored, version = found
            if pending is not None and version == pending[1]:
                return pending[0]  # the write whose answer was lost applied
            changed = change(stored)
            if changed is None:
                return None
            if not noted:
                await self._note(changed)
                noted = True
            new = uuid.uuid4()
            params = (self.ttl, encode(changed), new, ns, scope, delivery_id, version)
            try:
                rows = await self.conn.run("dl_update", *params)
                if rows[0][0]:
                    return changed
                pending = None
            except COMMIT_ERRORS as exc:
                if not outcome_unknown(exc):
                    raise
                log.warning(
                    "update outcome unknown, re-reading delivery=%s error=%s", delivery_id, exc
                )
                pending = (changed, new)
            await _backoff(attempt)
        raise Conflict(f"delivery {delivery_id!r} stayed contended for {attempts} attempts")

    # -- the log ---------------------------------------------------------------------------
    async def _note(self, delivery: Delivery) -> None:
        """Write (or refresh) the delivery's row in its target's log."""
        params = (self.prefix, delivery.target, delivery.id, delivery.scope, self.ttl)
        await self.conn.run("dl_note", *params)

    # Last: below it, ``list`` in an annotation would name this method.
    async def list(
        self,
        target: str,
        *,
        limit: int,
        before: str | None = None,
        status: Status | None = None,
    ) -> list[Delivery]:
        if limit <= 0:
            return []
        ns = self.prefix
        page = min(limit if status is None else max(limit, STATUS_PAGE), MAX_PAGE)
        # "(before, '')" is below every row of id ``before``: ids below it, as in memory.
        below: tuple[str, str] | None = None if before is None else (before, "")
        found: list[Delivery] = []
        while True:
            if below is None:
                rows = await self.conn.run("dl_log_head", ns, target, page)
            else:
                rows = await self.conn.run("dl_log_below", ns, target, *below, page)
            records = await self.conn.run_all(
                ("dl_get", (ns, scope, delivery_id)) for delivery_id, scope in rows
            )
            for held in records:
                stored = decode_delivery(held[0][0]) if held else None
                # A log row may outlive its delivery, or (a rival claim) name another target.
                if stored is None or stored.target != target:
                    continue
                if status is None or stored.status == status:
                    found.append(stored)
                    if len(found) == limit:
                        return found
            if len(rows) < page:
                return found
            below = (rows[-1][0], rows[-1][1])
