"""The widget's files (the checkout's ``static/`` directory) served at ``/static``.

The widget is plain files with no build step, so the server that speaks the API can also
serve the script that speaks to it: ``<script type="module" src=".../static/notifier.js">``.
The directory is found next to the ``notifier`` package, i.e. in the checkout notifier runs
from (``scripts/run`` and ``scripts/test`` install it in editable mode). A wheel does not
carry it: then ``/static`` is not mounted, a warning says so, and the files can be served by
any web server instead (the widget works cross-origin from an allowed origin).

How ``StaticAssets`` serves them:

- Compressed: a file is read and gzipped once per content, and both bodies are kept in
  memory (the widget is four files, ~60 kB raw). A request whose ``Accept-Encoding`` allows
  gzip gets the compressed body; every answer says ``Vary: Accept-Encoding`` so that shared
  caches keep the two apart.
- Validated: each representation has a strong ``ETag``, a hash of its exact bytes, so every
  web process and every restart gives the same tag for the same bytes; an ``If-None-Match``
  that matches gets ``304 Not Modified`` with no body.
- Cached briefly: ``Cache-Control: public, max-age=300``. The widget's URLs carry no version
  (apps embed ``/static/notifier.js`` as it is), so a long lifetime or ``immutable`` would
  hide an upgrade from browsers for as long. Five minutes spares the requests of a browsing
  session (``notifier.js`` imports two more modules, fetched one after the other); after
  that, the ETag makes a revalidation a bodiless 304.
- Fresh: every request stats the file; a change of size, mtime or inode (editors that
  replace the file) reloads it, so an edited widget is served at once in a checkout.
- Confined: only plain names below the directory are served: no ``..``, no dot-files, no
  symlink leading out. Anything else, and any missing file, is a plain-text 404.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import mimetypes
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from starlette.routing import Mount
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketClose

log = logging.getLogger(__name__)

CHECKOUT = Path(__file__).resolve().parents[2]
"""The repository root when notifier runs from a checkout (editable install)."""
STATIC_DIR = CHECKOUT / "static"
TEMPLATES_DIR = CHECKOUT / "templates"
STATIC_PATH = "/static"
MAX_AGE = 300
"""Seconds a browser may use a widget file without asking again (see the module's doc)."""

CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
"""Types for the widget's kinds of file, independent of the host's ``/etc/mime.types``."""

Stamp = tuple[int, int, int]
"""(inode, size, mtime in ns): what tells that a file changed on disk."""


@dataclass(frozen=True)
class Representation:
    """One body a file is served as, and its strong ETag (quoted)."""

    body: bytes
    etag: str

    @classmethod
    def of(cls, body: bytes) -> Representation:
        """``body`` with a tag of its SHA-256 (128 bits of it)."""
        return cls(body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


@dataclass(frozen=True)
class Asset:
    """A file's content as last read: its raw bytes and, when that is smaller, gzipped."""

    stamp: Stamp
    content_type: str
    identity: Representation
    gzipped: Representation | None


def load_asset(path: Path) -> Asset:
    """Read and compress ``path`` (blocking: call it from a thread); OSError as ``open``.

    The stamp is taken from the open file before reading it: a write that lands during the
    read changes the file's stamp after this one, so the next request reads it again rather
    than keeping a half-written file.
    """
    with path.open("rb") as file:
        before = _stamp(os.fstat(file.fileno()))
        raw = file.read()
    packed = gzip.compress(raw, compresslevel=9, mtime=0)  # mtime=0: same bytes every time
    return Asset(
        stamp=before,
        content_type=content_type(path),
        identity=Representation.of(raw),
        gzipped=Representation.of(packed) if len(packed) < len(raw) else None,
    )


def content_type(path: Path) -> str:
    """The Content-Type for a file name."""
    known = CONTENT_TYPES.get(path.suffix.lower())
    if known is not None:
        return known
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip (``gzip;q=0`` refuses it, ``*`` allows
    it unless gzip is named)."""
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        name, *params = item.split(";")
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[name.strip().lower()] = weight
    return weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0))) > 0


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` value names ``etag`` (weak comparison, as RFC 9110 says
    for this header) or is ``*``."""
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


class StaticAssets:
    """An ASGI app serving the files of one directory (see the module's doc for how).

    Meant for a handful of small files: each one served is kept in memory, raw and gzipped.
    Each request stats its file on the event loop (a cached inode, microseconds); reading
    and compressing a new or changed file happens in a thread.
    """

    def __init__(self, directory: Path, *, max_age: int = MAX_AGE) -> None:
        self.directory = directory.resolve()
        self.cache_control = f"public, max-age={max_age}".encode()
        self._assets: dict[str, Asset] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await WebSocketClose()(scope, receive, send)
            return
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _plain(send, 405, b"Method Not Allowed", [(b"allow", b"GET, HEAD")])
            return
        asset = await self.asset(_route_path(scope))
        if asset is None:
            await _plain(send, 404, b"Not Found")
            return
        headers = _headers(scope)
        chosen = asset.identity
        if asset.gzipped is not None and accepts_gzip(headers.get(b"accept-encoding", "")):
            chosen = asset.gzipped
        common = [
            (b"etag", chosen.etag.encode()),
            (b"cache-control", self.cache_control),
            (b"vary", b"Accept-Encoding"),
            # Public files, fetched without credentials: any page may load the widget's
            # modules (a module script needs CORS). A page whose origin the API refuses then
            # gets a widget that says so, instead of a module the browser refused to run.
            (b"access-control-allow-origin", b"*"),
        ]
        if etag_matches(headers.get(b"if-none-match", ""), chosen.etag):
            await send({"type": "http.response.start", "status": 304, "headers": common})
            await send({"type": "http.response.body", "body": b""})
            return
        common += [
            (b"content-type", asset.content_type.encode()),
            (b"content-length", str(len(chosen.body)).encode()),
            (b"x-content-type-options", b"nosniff"),
        ]
        if chosen is asset.gzipped:
            common.append((b"content-encoding", b"gzip"))
        await send({"type": "http.response.start", "status": 200, "headers": common})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else chosen.body})

    async def asset(self, relative: str) -> Asset | None:
        """The current content of ``relative`` (a path below the directory), reloaded if the
        file changed since it was read; None when it is not a servable file."""
        path = self._confined(relative)
        try:
            found = os.stat(path) if path is not None else None
        except OSError:  # missing, or a path through a file ("notifier.js/x")
            found = None
        if path is None or found is None or not stat.S_ISREG(found.st_mode):
            self._assets.pop(relative, None)
            return None
        cached = self._assets.get(relative)
        if cached is not None and cached.stamp == _stamp(found):
            return cached
        try:
            loaded = await asyncio.to_thread(load_asset, path)
        except OSError:  # removed between the stat and the open
            return None
        self._assets[relative] = loaded
        log.debug("static file loaded path=%s bytes=%d", relative, len(loaded.identity.body))
        return loaded

    def _confined(self, relative: str) -> Path | None:
        """The file ``relative`` names inside the directory, or None if it names anything
        else: ``..`` or a dot-file anywhere, an empty segment, a backslash, a NUL, or a
        symlink whose target is outside."""
        parts = relative.split("/")
        if any(not p or p.startswith(".") or "\\" in p or "\0" in p for p in parts):
            return None
        path = self.directory.joinpath(*parts)
        if not path.resolve().is_relative_to(self.directory):
            return None
        return path


def static_mount(directory: Path = STATIC_DIR) -> Mount | None:
    """``/static`` serving ``directory``, or None (with a warning) when it is not there."""
    if not (directory / "notifier.js").is_file():
        log.warning("widget files not found in %s: /static is not served", directory)
        return None
    return Mount(STATIC_PATH, app=StaticAssets(directory), name="static")


def _stamp(found: os.stat_result) -> Stamp:
    return (found.st_ino, found.st_size, found.st_mtime_ns)


def _route_path(scope: Scope) -> str:
    """The request's path below the mount point, without its leading slash."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path.removeprefix("/")


def _headers(scope: Scope) -> dict[bytes, str]:
    """The request headers by lower-case name; repeated headers joined with commas."""
    joined: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        text = value.decode("latin-1")
        joined[name] = f"{joined[name]}, {text}" if name in joined else text
    return joined


async def _plain(
    send: Send, status: int, text: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(text)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text})
