"""The raw baseline of the push benchmark: a bare ``websockets`` server that broadcasts.

Any connection that sends ``go:<frame>`` makes the server broadcast ``<frame>`` to every other
connection with ``websockets.broadcast`` (the library's fastest path), compression off like
notifier's default. Run as ``python -m notifier.bench.raw_ws PORT``.
"""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.server import ServerConnection, broadcast, serve


async def main(port: int) -> None:
    clients: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        clients.add(ws)
        try:
            async for message in ws:
                if isinstance(message, str) and message.startswith("go:"):
                    broadcast(clients - {ws}, message[3:])
        finally:
            clients.discard(ws)

    async with serve(handler, "127.0.0.1", port, compression=None, max_size=8192):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
