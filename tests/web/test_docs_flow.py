"""docs/api.md, followed with curl against a real ``notifier serve`` on the memory backend.

The shell blocks are read from the markdown, not copied here: the "Try it" block runs as
printed (its ``export`` lines set up the server's environment, the ``notifier serve &`` line is
this file's fixture, and only the port changes); every other ``sh`` block with curl commands
then runs in document order with the ``KEY`` and ``TOKEN`` the "Try it" block set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.services import free_port

pytestmark = pytest.mark.timeout(60)

API_MD = Path(__file__).resolve().parents[2] / "docs" / "api.md"
DOC_PORT = "8000"
SERVE_LINE = re.compile(r"^\s*notifier serve\b")
PLACEHOLDER = re.compile(r"<[a-z][^<>\n]*>")
"""``<next>``, ``<position of ...>``: where a reader pastes a value from an earlier answer."""

DOCUMENTED_STATUS = {
    ("POST", r"/v1/activities"): 201,  # "Returns `201` with the stored activity"
    ("DELETE", r"/v1/activities/[0-9a-f]{26}"): 404,  # "or `404` when nothing matched"
}
"""Statuses the prose of docs/api.md gives for its examples; any other example must get 2xx."""


@dataclass(frozen=True)
class ShBlock:
    """One fenced ``sh`` block and the heading it sits under."""

    heading: str
    code: str


def sh_blocks() -> list[ShBlock]:
    """Every ```sh block of docs/api.md, in document order."""
    blocks: list[ShBlock] = []
    heading = ""
    fence: list[str] | None = None
    for line in API_MD.read_text().splitlines():
        if fence is not None:
            if line.startswith("```"):
                blocks.append(ShBlock(heading, "\n".join(fence) + "\n"))
                fence = None
            else:
                fence.append(line)
        elif line.startswith("```sh"):
            fence = []
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
    assert fence is None, "docs/api.md has an unclosed code fence"
    return blocks


def try_it() -> ShBlock:
    (block,) = [b for b in sh_blocks() if b.heading.startswith("Try it")]
    return block


def curl_blocks() -> list[ShBlock]:
    """The ``sh`` blocks with curl commands, the "Try it" block aside."""
    return [
        b
        for b in sh_blocks()
        if not b.heading.startswith("Try it") and re.search(r"^curl\b", b.code, re.M)
    ]


def split_at_serve(block: ShBlock) -> tuple[str, str]:
    """The lines before ``notifier serve &`` (the reader's set-up) and after it."""
    lines = block.code.splitlines(keepends=True)
    (at,) = [i for i, line in enumerate(lines) if SERVE_LINE.match(line)]
    return "".join(lines[:at]), "".join(lines[at + 1 :])


def on_port(script: str, port: int) -> str:
    """The script with the documented port replaced by the test server's."""
    adapted = re.sub(rf"\b(localhost|127\.0\.0\.1):{DOC_PORT}\b", rf"\g<1>:{port}", script)
    assert f":{DOC_PORT}" not in adapted
    return adapted


def clean_env() -> dict[str, str]:
    """This environment without any NOTIFIER_* setting (so: memory backend, defaults)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}


def bash(script: str, env: dict[str, str], timeout: float = 30) -> str:
    """Run ``script`` with bash, as a reader pasting it would (plus -eu), and return stdout."""
    result = subprocess.run(
        ["bash", "-eu", "-o", "pipefail", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr}\n{script}"
    return result.stdout


def exported_by(setup: str) -> dict[str, str]:
    """The NOTIFIER_* variables a shell has after running ``setup``."""
    out = bash(setup + "\nenv -0\n", clean_env())
    pairs = (item.split("=", 1) for item in out.split("\0") if "=" in item)
    return {k: v for k, v in pairs if k.startswith("NOTIFIER_")}


@dataclass
class Server:
    """A ``notifier serve`` process and what its clients need."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def get(self, path: str, headers: dict[str, str]) -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)


def wait_healthy(server: Server, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(
                f"notifier serve exited with {server.proc.returncode}:\n{server.log_text()}"
            )
        try:
            if server.get("/healthz", {}) == {"status": "ok", "checks": {}}:
                return
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail(f"notifier serve not healthy after {within}s:\n{server.log_text()}")


@pytest.fixture
def server() -> Iterator[Server]:
    """``notifier serve`` on a free port, with the environment the "Try it" block exports."""
    assert shutil.which("curl"), "curl is needed to follow docs/api.md (apt-get install curl)"
    setup, _ = split_at_serve(try_it())
    env = clean_env() | exported_by(setup)
    assert {"NOTIFIER_SECRET", "NOTIFIER_API_KEYS"} <= set(env)
    port = free_port()
    env["NOTIFIER_PORT"] = str(port)
    tmp = Path(tempfile.mkdtemp(prefix="notifier-docs-"))
    log = tmp / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "notifier.cli", "serve", "--log-level", "warning"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Server(port, proc, log)
    try:
        wait_healthy(running)
        yield running
        assert "Traceback" not in running.log_text(), running.log_text()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)


def json_documents(text: str) -> list[Any]:
    """The JSON documents curl printed back to back (``curl -s`` adds no newline)."""
    decoder = json.JSONDecoder()
    documents, at = [], 0
    while (at := _skip_space(text, at)) < len(text):
        document, at = decoder.raw_decode(text, at)
        documents.append(document)
    return documents


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def test_try_it_puts_anas_like_in_bos_notification_feed(server: Server) -> None:
    setup, rest = split_at_serve(try_it())
    out = bash(on_port(setup + rest, server.port), clean_env())

    added, feed = json_documents(out)
    assert added["actor"] == "ana" and added["to"] == ["notification:bo"]
    (group,) = feed["groups"]
    assert group["verb"] == "like"
    assert group["activity_count"] == 1
    assert group["actors"] == ["ana"]
    assert [a["id"] for a in group["activities"]] == [added["id"]]
    assert feed["next"] is None
    assert feed["counts"] == {"unseen": 1, "unread": 1}


# Each curl call of the doc blocks leaves <n>.args (NUL-separated), .status, .body and .rc.
CURL_RECORDER = r"""
calls=0
curl() {
  calls=$((calls + 1))
  printf '%s\0' "$@" > "$RECORD/$calls.args"
  local rc=0
  command curl -sS -o "$RECORD/$calls.body" -w '%{http_code}' "$@" \
    > "$RECORD/$calls.status" 2> "$RECORD/$calls.err" || rc=$?
  echo "$rc" > "$RECORD/$calls.rc"
}
"""


@dataclass
class CurlCall:
    """One curl command of the docs as it ran: what the doc showed and what came back."""

    source: str
    args: list[str]
    exit_code: int
    stderr: str
    status: int
    body: str

    @property
    def method(self) -> str:
        return self.args[self.args.index("-X") + 1] if "-X" in self.args else "GET"

    @property
    def path(self) -> str:
        (url,) = [a for a in self.args if re.match(r"(localhost|127\.0\.0\.1):\d+/", a)]
        return urlsplit("http://" + url).path

    def documented_status(self) -> int | None:
        for (method, pattern), status in DOCUMENTED_STATUS.items():
            if self.method == method and re.fullmatch(pattern, self.path):
                return status
        return None

    def documented_body(self) -> Any:
        """The JSON a ``# → {...}`` (or ``# {...}``) comment says comes back, if any."""
        for comment in re.findall(r"#\s*(?:→\s*)?(\{.*\})\s*$", self.source, re.M):
            try:
                return json.loads(comment)
            except ValueError:
                continue
        return None


def commands(code: str) -> list[str]:
    """The source of each curl command of a block, with the comments after it."""
    starts = [m.start() for m in re.finditer(r"^curl\b", code, re.M)]
    return [code[a:b] for a, b in zip(starts, [*starts[1:], len(code)], strict=True)]


def test_every_curl_example_of_the_api_doc_runs_against_the_server(server: Server) -> None:
    setup, rest = split_at_serve(try_it())
    prelude = on_port(setup + rest, server.port)
    # A reader pastes a real value where the doc shows <next> or <position ...>: bo's group
    # position, once the "Try it" block (run first, as the reader did) has put one there.
    key = "Bearer " + exported_by(setup)["NOTIFIER_API_KEYS"]
    blocks = curl_blocks()
    sources = [c for b in blocks for c in commands(b.code)]
    assert len(sources) >= 20, "docs/api.md lost its curl examples?"

    with tempfile.TemporaryDirectory(prefix="notifier-docs-curl-") as record:
        bash(prelude, clean_env())
        feed = server.get("/v1/feeds/notification/bo", {"Authorization": key})
        position = feed["groups"][0]["position"]
        script = "\n".join(
            [
                "{\n" + prelude + "} > /dev/null",
                CURL_RECORDER,
                *(PLACEHOLDER.sub(position, on_port(b.code, server.port)) for b in blocks),
            ]
        )
        bash(script, clean_env() | {"RECORD": record})
        calls = [_recorded(Path(record), n, source) for n, source in enumerate(sources, 1)]
        assert not (Path(record) / f"{len(sources) + 1}.rc").exists()

    for call in calls:
        where = f"{call.method} {call.path} ({call.source.strip()}): {call.status} {call.body}"
        assert call.exit_code == 0, f"curl failed: {call.stderr} in {where}"
        assert call.status < 500, where
        body = json.loads(call.body)
        expected = call.documented_status()
        if expected is not None:
            assert call.status == expected, where
        else:
            assert 200 <= call.status < 300, where
        shown = call.documented_body()
        if isinstance(shown, dict):
            assert set(body) == set(shown), where


def _recorded(record: Path, n: int, source: str) -> CurlCall:
    status = (record / f"{n}.status").read_text().strip()
    return CurlCall(
        source=source,
        args=(record / f"{n}.args").read_text().split("\0")[:-1],
        exit_code=int((record / f"{n}.rc").read_text()),
        stderr=(record / f"{n}.err").read_text(),
        status=int(status) if status.isdigit() else 0,
        body=(record / f"{n}.body").read_text() if (record / f"{n}.body").exists() else "",
    )
