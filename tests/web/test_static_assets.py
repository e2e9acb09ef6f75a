"""``/static`` over real HTTP (uvicorn on a free port): gzip, ETags and 304s, Cache-Control,
HEAD, plain 404s, no way out of the directory, and edits on disk served at once."""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp

import notifier.web.static as static
from notifier.storage.memory import MemoryStorage
from notifier.web.app import create_app
from notifier.web.static import STATIC_DIR, accepts_gzip, static_mount
from tests.services import free_port
from tests.web.conftest import close_services, make_services, server_settings

WIDGET = ("notifier.js", "notifier-client.js", "notifier-i18n.js", "notifier.css")
GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` under uvicorn on a free port, and a client of it that decodes nothing itself."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield http
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The whole app, as ``notifier serve`` builds it, serving the checkout's widget."""
    services = make_services(MemoryStorage(), server_settings())
    async with serving(create_app(services)) as client:
        yield client
    await close_services(services)
    await services.notifier.close()


@dataclass(frozen=True)
class Wire:
    """A response as it crossed the wire: its body not decoded."""

    status_code: int
    headers: httpx.Headers
    content: bytes


async def get_raw(http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> Wire:
    """A GET with the body's bytes as sent (httpx would otherwise gunzip them)."""
    async with http.stream("GET", path, headers=headers) as response:
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    return Wire(response.status_code, response.headers, body)


async def raw_request(http: httpx.AsyncClient, target: str) -> tuple[int, bytes]:
    """GET ``target`` exactly as written (httpx would resolve ``..`` before sending it)."""
    url = http.base_url
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_widget_files_go_gzipped_and_decompress_to_the_exact_file_bytes(
    http: httpx.AsyncClient,
) -> None:
    for name in WIDGET:
        on_disk = (STATIC_DIR / name).read_bytes()
        packed = await get_raw(http, f"/static/{name}", GZIP)
        assert packed.status_code == 200
        assert packed.headers["content-encoding"] == "gzip"
        assert int(packed.headers["content-length"]) == len(packed.content)
        assert len(packed.content) < len(on_disk) / 2  # JS and CSS shrink by well over half
        assert gzip.decompress(packed.content) == on_disk

        plain = await get_raw(http, f"/static/{name}", IDENTITY)
        assert plain.status_code == 200
        assert "content-encoding" not in plain.headers
        assert int(plain.headers["content-length"]) == len(on_disk)
        assert plain.content == on_disk

        media = "text/css" if name.endswith(".css") else "text/javascript"
        for response in (packed, plain):
            assert response.headers["content-type"].split(";")[0] == media
            assert response.headers["cache-control"] == "public, max-age=300"
            assert "Accept-Encoding" in response.headers["vary"]
            assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip", True),
        ("br, gzip;q=0.5", True),
        ("*", True),
        ("gzip;q=0", False),
        ("*, gzip;q=0", False),
        ("identity", False),
        ("br", False),
        ("", False),
    ],
)
async def test_gzip_is_sent_only_when_accept_encoding_allows_it(
    http: httpx.AsyncClient, accept_encoding: str, gzipped: bool
) -> None:
    assert accepts_gzip(accept_encoding) is gzipped
    response = await get_raw(http, "/static/notifier.js", {"Accept-Encoding": accept_encoding})
    assert (response.headers.get("content-encoding") == "gzip") is gzipped
    assert "Accept-Encoding" in response.headers["vary"]


async def test_each_representation_has_its_own_strong_etag_and_if_none_match_gets_a_304(
    http: httpx.AsyncClient,
) -> None:
    packed = await get_raw(http, "/static/notifier.js", GZIP)
    plain = await get_raw(http, "/static/notifier.js", IDENTITY)
    zipped_tag, plain_tag = packed.headers["etag"], plain.headers["etag"]
    assert zipped_tag != plain_tag
    for tag in (zipped_tag, plain_tag):
        assert tag.startswith('"') and tag.endswith('"')  # strong: no W/
    # The same bytes get the same tag from a new request (a hash, not a per-process counter).
    assert (await get_raw(http, "/static/notifier.js", GZIP)).headers["etag"] == zipped_tag

    for headers, tag in ((GZIP, zipped_tag), (IDENTITY, plain_tag)):
        for if_none_match in (tag, f"W/{tag}", f'"other", {tag}', "*"):
            asking = {**headers, "If-None-Match": if_none_match}
            cached = await get_raw(http, "/static/notifier.js", asking)
            assert cached.status_code == 304, if_none_match
            assert cached.content == b""
            assert cached.headers["etag"] == tag
            assert cached.headers["cache-control"] == "public, max-age=300"
            assert "Accept-Encoding" in cached.headers["vary"]
            assert "content-encoding" not in cached.headers

    # A tag of the other representation (or of nothing) does not validate this one.
    crossed = await get_raw(http, "/static/notifier.js", {**GZIP, "If-None-Match": plain_tag})
    assert crossed.status_code == 200
    assert gzip.decompress(crossed.content) == (STATIC_DIR / "notifier.js").read_bytes()
    stale = await get_raw(http, "/static/notifier.js", {**IDENTITY, "If-None-Match": '"0000"'})
    assert stale.status_code == 200


async def test_head_answers_the_headers_of_get_without_a_body(http: httpx.AsyncClient) -> None:
    for headers in (GZIP, IDENTITY):
        got = await get_raw(http, "/static/notifier.css", headers)
        head = await http.head("/static/notifier.css", headers=headers)
        assert head.status_code == 200
        assert head.content == b""
        for name in ("content-length", "content-type", "etag", "cache-control", "vary"):
            assert head.headers[name] == got.headers[name], name
        assert head.headers.get("content-encoding") == got.headers.get("content-encoding")


async def test_a_missing_file_is_a_plain_text_404_and_other_methods_a_405(
    http: httpx.AsyncClient,
) -> None:
    missing = await http.get("/static/nope.js")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/plain")
    assert missing.text == "Not Found"
    assert (await http.get("/static/")).status_code == 404
    assert (await http.get("/static/notifier.js/inside")).status_code == 404

    post = await http.post("/static/notifier.js", json={})
    assert post.status_code == 405
    assert post.headers["allow"] == "GET, HEAD"


async def test_no_path_leads_out_of_the_static_directory(http: httpx.AsyncClient) -> None:
    project = (STATIC_DIR.parent / "pyproject.toml").read_bytes()
    for target in (
        "/static/../pyproject.toml",
        "/static/%2e%2e/pyproject.toml",
        "/static/..%2fpyproject.toml",
        "/static/%2E%2E%2Fpyproject.toml",
        "/static/..%5cpyproject.toml",
        "/static/./../pyproject.toml",
        "/static//work/main/pyproject.toml",
        "/static/.gitkeep",
    ):
        status, body = await raw_request(http, target)
        assert status == 404, target
        assert b"[project]" not in body and body != project, target


async def test_a_symlink_out_of_the_directory_is_not_followed(tmp_path: Path) -> None:
    widget = tmp_path / "static"
    widget.mkdir()
    (widget / "notifier.js").write_text("export {};\n")
    (tmp_path / "secret.txt").write_text("the secret\n")
    (widget / "secret.js").symlink_to(tmp_path / "secret.txt")
    (widget / "alias.js").symlink_to(widget / "notifier.js")  # inside: served
    async with serving(_app_serving(widget)) as client:
        assert (await client.get("/static/secret.js")).status_code == 404
        alias = await client.get("/static/alias.js")
        assert alias.status_code == 200
        assert alias.text == "export {};\n"


async def test_an_edited_file_is_served_fresh_and_compressed_once_per_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[Path] = []
    real_load = static.load_asset

    def counting_load(path: Path) -> static.Asset:
        loads.append(path)
        return real_load(path)

    monkeypatch.setattr(static, "load_asset", counting_load)
    script = tmp_path / "notifier.js"
    first = b"export const version = 'aaaa';\n" * 40
    script.write_bytes(first)
    async with serving(_app_serving(tmp_path)) as client:
        for _ in range(5):
            response = await get_raw(client, "/static/notifier.js", GZIP)
            assert gzip.decompress(response.content) == first
        assert len(loads) == 1  # read and compressed once, then served from memory
        old_tag = response.headers["etag"]

        # Same size, new mtime (set apart explicitly: filesystem clocks tick coarsely).
        second = first.replace(b"aaaa", b"bbbb")
        script.write_bytes(second)
        os.utime(script, ns=(script.stat().st_atime_ns, script.stat().st_mtime_ns + 10**9))
        fresh = await get_raw(client, "/static/notifier.js", {**GZIP, "If-None-Match": old_tag})
        assert fresh.status_code == 200
        assert gzip.decompress(fresh.content) == second
        assert fresh.headers["etag"] != old_tag
        assert len(loads) == 2

        # New size, mtime put back to the old one: the size alone tells.
        mtime = script.stat().st_mtime_ns
        third = second + b"// more\n"
        script.write_bytes(third)
        os.utime(script, ns=(mtime, mtime))
        assert (await get_raw(client, "/static/notifier.js", IDENTITY)).content == third

        # Replaced by a rename (as editors save), same size and mtime: the inode tells.
        fourth = third.replace(b"bbbb", b"cccc")
        replacement = tmp_path / "notifier.js.new"
        replacement.write_bytes(fourth)
        os.utime(replacement, ns=(mtime, mtime))
        replacement.replace(script)
        assert (await get_raw(client, "/static/notifier.js", IDENTITY)).content == fourth

        script.unlink()
        assert (await client.get("/static/notifier.js")).status_code == 404


def _app_serving(directory: Path) -> Starlette:
    mount = static_mount(directory)
    assert mount is not None
    return Starlette(routes=[mount])
