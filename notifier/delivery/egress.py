"""Where webhook POSTs may connect: the address a name resolves to, checked, not the name.

An endpoint URL is checked when it is registered (``webhooks.check_url``), but only as
written: ``https://hooks.example.com`` may resolve to ``127.0.0.1``, to ``10.0.0.5`` or to a
cloud's metadata service (``169.254.169.254``), and a DNS answer can change between a check
and the connection that follows it (DNS rebinding). So the HTTP client resolves the name
itself, refuses it when any address it resolves to is not a global one (unless
``delivery.webhook.allow_private``), and connects to one of the addresses it checked, never
resolving again. TLS still verifies the certificate against the URL's name (httpcore sends
the origin's host as SNI and checks the certificate against it, not the address).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

import httpcore
import httpx


def is_private(host: str) -> bool:
    """Whether ``host`` (a name as written, or an address) is one a webhook must not reach
    unless private addresses are allowed: loopback, private, link-local, reserved,
    multicast, unspecified, and IPv4 addresses written as IPv4-mapped IPv6. A name that is
    not an address is private only if it is ``localhost`` (what it resolves to is checked
    when connecting)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, resolving and checking names before it connects."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            found = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout
            )
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"{host} does not resolve: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        refused = [a for a in addresses if is_private(a)]
        if refused and not self.allow_private:
            raise httpcore.ConnectError(
                f"{host} resolves to a private or loopback address ({refused[0]}); "
                "delivery.webhook.allow_private allows it"
            )
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = httpcore.ConnectError(f"{host} ({address}): {exc}")
        raise failure or httpcore.ConnectError(f"{host} resolves to no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are not sent over unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport whose connections go through ``_CheckedBackend``.

    httpx has no public way to give its connection pool a network backend, so the pool it
    built is replaced by one with the same limits and this backend (a change in httpx that
    broke this would show in tests/delivery/test_egress.py, which needs the check to run).
    Environment proxies (``HTTPS_PROXY``) are not used: a webhook connects directly."""

    def __init__(self, *, limits: httpx.Limits, allow_private: bool) -> None:
        super().__init__(limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_CheckedBackend(allow_private),
        )
