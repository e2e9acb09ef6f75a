"""The driver's HTTP side: the documented API over every web process, recording what went wrong.

Every response is tallied by status; a 5xx or a transport error is kept with its request (the
test fails on any). 429 is waited out (``Retry-After``); the servers run with high limits, so
it should not happen. A request is sent again once after a transport error when that is safe:
a GET, or any request whose connection was refused (it reached no server; a load balancer
retries those too). Nothing here imports notifier.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.e2e.model import position

Json = dict[str, Any]
PAGE = 100


@dataclass
class Failure:
    where: str
    status: int | None
    detail: str


@dataclass
class Api:
    """An httpx client per web process, used in turn."""

    bases: list[str]
    api_key: str
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    retried: int = 0
    """Requests sent again after a transport error (see the module docstring)."""

    def __post_init__(self) -> None:
        # Idle connections are dropped before uvicorn's keep-alive timeout (5 s) closes them
        # from its side: a request sent on a connection the server is closing at that very
        # moment fails with "server disconnected", a race of HTTP/1.1 keep-alive itself.
        self.limits = httpx.Limits(max_connections=32, max_keepalive_connections=16,
                                   keepalive_expiry=2.0)  # fmt: skip
        self.clients = [
            httpx.AsyncClient(base_url=b, timeout=30, limits=self.limits) for b in self.bases
        ]
        self._turn = itertools.cycle(range(len(self.clients)))

    async def close(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.clients))

    def replace(self, index: int, base: str) -> httpx.AsyncClient:
        """Send what went to the ``index``-th web process to ``base`` from now on (a load
        balancer taking a stopping process out). Returns the old client: requests in flight
        on it are still answered; close it once they are."""
        old = self.clients[index]
        self.bases[index] = base
        self.clients[index] = httpx.AsyncClient(base_url=base, timeout=old.timeout,
                                                limits=self.limits)  # fmt: skip
        return old

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Json | None = None,
        params: dict[str, Any] | None = None,
        via: int | None = None,
    ) -> httpx.Response:
        """One request, through the next web process or the ``via``-th one (API key unless
        ``token``)."""
        headers = {"Authorization": f"Bearer {token or self.api_key}"}
        where = f"{method} {path} {params or ''}".strip()
        resend = True
        for _ in range(20):
            client = self.clients[next(self._turn) if via is None else via]
            try:
                response = await client.request(
                    method, path, json=body, params=params, headers=headers
                )
            except httpx.TransportError as exc:
                # A write that may have reached a server is not sent twice (a follow would
                # answer "followed: false" the second time).
                if resend and (method == "GET" or isinstance(exc, httpx.ConnectError)):
                    resend = False
                    self.retried += 1
                    continue
                self.failures.append(Failure(f"{where} via {client.base_url}", None, repr(exc)))
                raise
            self.statuses[response.status_code] += 1
            if response.status_code >= 500:
                self.failures.append(
                    Failure(
                        f"{where} via {client.base_url}",
                        response.status_code,
                        f"body {str(body)[:300]} -> {response.text[:500]}",
                    )
                )
            if response.status_code != 429:
                return response
            await asyncio.sleep(float(response.headers.get("Retry-After", "0.2")))
        return response

    async def token(self, user: str, ttl: int = 86400) -> str:
        response = await self.call("POST", "/v1/tokens", body={"user": user, "ttl": ttl})
        response.raise_for_status()
        return str(response.json()["token"])

    async def read(
        self, group: str, user: str | None = None, *, token: str | None = None,
        down_to: str = "", via: int | None = None,
    ) -> tuple[list[Json], Json | None]:  # fmt: skip
        """A feed's items newest first, paging with ``id_lt`` until past ``down_to`` (a
        position; ``""``: the whole feed), and its counts. With ``token``: the client API;
        with ``via``: through that web process only."""
        path = f"/v1/me/feeds/{group}" if token else f"/v1/feeds/{group}/{user}"
        items: list[Json] = []
        counts: Json | None = None
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": PAGE, **everything(group)}
            if cursor is not None:
                params["id_lt"] = cursor
            response = await self.call("GET", path, token=token, params=params, via=via)
            if response.status_code != 200:
                raise AssertionError(f"GET {path} {params}: {response.status_code} {response.text}")
            page = response.json()
            if counts is None:
                counts = page.get("counts")
            got = page.get("groups", page.get("activities", []))
            items += got
            cursor = page.get("next")
            if cursor is None or not got or (down_to and position(got[-1]) < down_to):
                break
        if down_to:
            items = [i for i in items if position(i) >= down_to]
        return items, counts


def everything(group: str) -> dict[str, str]:
    """The model and the websocket clients hold a notification feed's archived groups too;
    the HTTP default (``inbox``) leaves them out, so reads ask for ``status=all``."""
    return {"status": "all"} if group == "notification" else {}
