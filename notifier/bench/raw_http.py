"""The raw baselines of the feed-read benchmark: minimal Starlette routes returning a document.

``document`` is read once from a file (the benchmark passes the page notifier returned, so
every server sends the same bytes):

- ``GET /json`` answers ``JSONResponse(document)``, serialised on every request like any
  minimal JSON endpoint (with the standard library's ``json``);
- ``GET /bytes`` answers the same JSON encoded once at start: what is left is uvicorn,
  Starlette's routing and moving the bytes.

Served by uvicorn with the options ``notifier serve`` uses.
Run as ``python -m notifier.bench.raw_http PORT DOCUMENT.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from notifier.realtime.settings import RealtimeSettings, uvicorn_options


def create_app(document: Any) -> Starlette:
    """The baseline app: ``GET /json`` and ``GET /bytes`` → ``document`` as JSON."""
    encoded = JSONResponse(document).body

    async def json_page(request: Request) -> Response:
        return JSONResponse(document)

    async def bytes_page(request: Request) -> Response:
        return Response(encoded, media_type="application/json")

    return Starlette(
        routes=[
            Route("/json", json_page, methods=["GET"]),
            Route("/bytes", bytes_page, methods=["GET"]),
        ]
    )


def serve(app: Starlette, port: int, log_level: str = "warning") -> None:
    """Run ``app`` on 127.0.0.1:``port`` with the uvicorn options of ``notifier serve``
    (notifier/cli.py), websocket settings at their defaults as in an unconfigured server."""
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level=log_level,
        **uvicorn_options(RealtimeSettings()),
    )


if __name__ == "__main__":
    serve(create_app(json.loads(Path(sys.argv[2]).read_text())), int(sys.argv[1]))
