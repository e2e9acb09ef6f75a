"""Peer benchmark: notifier's fanout and read workloads run with Stream Framework, the library it
succeeds, against the same Redis in the same run, so notifier's rates can be divided by its peer's.

Stream Framework 1.4.0 needs redis-py < 3 and notifier needs redis-py 5, so the peer runs in a
virtual environment of its own (created once under ``.bench/stream-framework-venv`` at the
repository root, reused afterwards) by a self-contained driver script,
``notifier/bench/peer_driver.py``, which prints its rates as one JSON object. Workloads (see the
driver): flat-feed fanout and notification-feed fanout, each in chunks of 100 followers through
the feed's batch interface as Stream Framework's fanout task does (follower-feed writes/s, median
over activities), and ``feed[:25]`` of a 1,000-item flat feed (reads/s, p50/p99 of one read).

When the peer cannot be installed or run (no network for pip, a Python it does not support), the
result says so and why instead of failing the whole bench.
Run: ``python -m notifier.bench.peer --redis-url redis://127.0.0.1:6379/5``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

logger = logging.getLogger(__name__)

REQUIREMENTS = ("stream-framework==1.4.0", "redis<3", "pytz")
"""redis<3: Stream Framework imports ``redis.client.BasePipeline``, gone in redis-py 3."""
KEY_PREFIX = "sfpeer:"
"""Every key the driver writes starts with this; it deletes nothing else (never FLUSHDB)."""
INSTALL_TIMEOUT_S = 900.0
DRIVER = Path(__file__).with_name("peer_driver.py")
_READY = ".notifier-peer-ready"
"""Written into the venv last: a venv without it (an interrupted install) is rebuilt."""


@dataclass
class PeerResult:
    """Stream Framework's figures, or why there are none (``available`` false, ``reason`` set)."""

    available: bool
    reason: str | None
    flat_writes_per_s: float | None
    """Median over activities of followers / seconds to fan one activity into flat feeds."""
    notification_writes_per_s: float | None
    """The same into notification feeds (aggregation: read, merge, write back per follower)."""
    reads_per_s: float | None
    """``feed[:25]`` of a 1,000-item flat feed, one after another."""
    read_p50_ms: float | None
    read_p99_ms: float | None
    followers: int
    version: str | None
    """Stream Framework's version, as the driver imported it."""

    @classmethod
    def unavailable(cls, reason: str, followers: int) -> PeerResult:
        """A result with no figures, saying why."""
        return cls(False, reason, None, None, None, None, None, followers, None)


class PeerUnavailable(Exception):
    """The peer could not be installed or run; the message says why."""


def cache_dir() -> Path:
    """``.bench/`` at the repository root (git ignores it); a user cache folder when notifier
    runs from an installed copy with no repository around it."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file():
        return root / ".bench"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "notifier" / "bench"


def run_peer(
    redis_url: str,
    *,
    followers: int = 10_000,
    activities: int = 3,
    reads_seconds: float = 5.0,
    progress: Callable[[str], None] | None = None,
    keep_keys: bool = False,
    timeout_s: float | None = None,
) -> PeerResult:
    """Install Stream Framework if needed, run the driver against ``redis_url``, parse its rates.

    The driver writes only keys under ``sfpeer:`` in the URL's db, deletes leftovers under that
    prefix first and (unless ``keep_keys``) its own keys afterwards; a db of its own is still the
    polite choice. ``timeout_s`` defaults to a generous bound from the workload's size. Raises
    ``ValueError`` for a URL it cannot use; every install or run failure becomes an unavailable
    result."""
    say = progress or logger.info
    target = _redis_target(redis_url)
    try:
        python = ensure_venv(say)
        if timeout_s is None:
            # At least 100 notification and 1,000 flat writes/s: ten times slower than measured.
            timeout_s = 120 + reads_seconds + followers * activities * (1 / 100 + 1 / 1000)
        data = _drive(
            python, target, followers, activities, reads_seconds, keep_keys, say, timeout_s
        )
    except PeerUnavailable as exc:
        return PeerResult.unavailable(str(exc), followers)
    return PeerResult(
        available=True,
        reason=None,
        flat_writes_per_s=float(data["flat_writes_per_s"]),
        notification_writes_per_s=float(data["notification_writes_per_s"]),
        reads_per_s=float(data["reads_per_s"]),
        read_p50_ms=float(data["read_p50_ms"]),
        read_p99_ms=float(data["read_p99_ms"]),
        followers=int(data["followers"]),
        version=str(data["version"]),
    )


def _redis_target(url: str) -> dict[str, Any]:
    """Host, port, db and password from a ``redis://`` URL (all the driver's redis-py 2 needs)."""
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"the peer needs a redis://host:port/db URL, got {url!r}")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"not a Redis db number: {path!r} in {url!r}")
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 6379,
        "db": int(path or 0),
        "password": unquote(parts.password) if parts.password else None,
    }


def ensure_venv(progress: Callable[[str], None]) -> Path:
    """The peer venv's interpreter: reused when ready, otherwise (re)built with pip.

    A lock file serialises concurrent builders (two benches or test workers at once). Raises
    ``PeerUnavailable`` when venv creation or pip fails, with the tail of their output."""
    venv = cache_dir() / "stream-framework-venv"
    python = venv / "bin" / "python"
    stamp = "\n".join([sys.version.split()[0], *REQUIREMENTS])
    venv.parent.mkdir(parents=True, exist_ok=True)
    with _locked(venv.parent / "stream-framework-venv.lock"):
        ready = venv / _READY
        if python.exists() and ready.is_file() and ready.read_text() == stamp:
            return python
        progress(f"peer: installing {' '.join(REQUIREMENTS)} into {venv} (once; reused after)")
        started = time.monotonic()
        shutil.rmtree(venv, ignore_errors=True)
        _run_or_explain([sys.executable, "-m", "venv", str(venv)], "creating the venv", progress)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check",
               "--progress-bar", "off", *REQUIREMENTS]  # fmt: skip
        _run_or_explain(pip, "pip install", progress)
        ready.write_text(stamp)
        progress(f"peer: venv ready in {time.monotonic() - started:.1f}s")
    return python


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_or_explain(args: list[str], what: str, progress: Callable[[str], None]) -> None:
    code, tail = _stream(args, progress, INSTALL_TIMEOUT_S)
    if code != 0:
        raise PeerUnavailable(f"{what} failed (exit {code}): " + " | ".join(tail[-8:]))


def _stream(
    args: list[str],
    progress: Callable[[str], None],
    timeout_s: float,
    *,
    stdout: IO[bytes] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[int, list[str]]:
    """Run ``args``, passing each line of its output (stderr, and stdout unless redirected to
    ``stdout``) to ``progress`` as it comes; returns the exit code and the last lines.

    A timer kills the process at ``timeout_s`` (exit code -9), so a hung pip or driver cannot
    hang the bench."""
    try:
        proc = subprocess.Popen(
            args,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE if stdout is not None else subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    except OSError as exc:
        raise PeerUnavailable(f"cannot start {args[0]}: {exc}") from exc
    output = proc.stderr if stdout is not None else proc.stdout
    assert output is not None
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    killer = threading.Timer(timeout_s, kill)
    killer.start()
    tail: deque[str] = deque(maxlen=20)
    try:
        for raw in output:
            line = raw.decode(errors="replace").rstrip()
            if line:
                tail.append(line)
                progress(f"peer: {line}")
        code = proc.wait()
    finally:
        killer.cancel()
        output.close()
    if timed_out.is_set():
        tail.append(f"killed after {timeout_s:g}s")
    return code, list(tail)


def _drive(
    python: Path,
    target: dict[str, Any],
    followers: int,
    activities: int,
    reads_seconds: float,
    keep_keys: bool,
    progress: Callable[[str], None],
    timeout_s: float,
) -> dict[str, Any]:
    """Run the driver in the peer venv; its JSON line, or ``PeerUnavailable`` with its last words.

    ``-I`` (isolated): the driver's folder must not shadow modules on the peer's path, and
    notifier's own PYTHON* settings must not leak into the other interpreter."""
    args = [str(python), "-I", str(DRIVER), "--host", target["host"], "--port",
            str(target["port"]), "--db", str(target["db"]), "--prefix", KEY_PREFIX,
            "--followers", str(followers), "--activities", str(activities),
            "--reads-seconds", str(reads_seconds)]  # fmt: skip
    if keep_keys:
        args.append("--keep-keys")
    env = dict(os.environ)
    env.pop("PEER_REDIS_PASSWORD", None)
    if target["password"]:
        env["PEER_REDIS_PASSWORD"] = target["password"]
    progress(f"peer: Stream Framework, {followers:,} followers, {activities} activity(ies)")
    with tempfile.TemporaryFile() as out:
        code, tail = _stream(args, progress, timeout_s, stdout=out, env=env)
        out.seek(0)
        lines = out.read().decode(errors="replace").splitlines()
    if code != 0 or not lines:
        raise PeerUnavailable(f"the driver failed (exit {code}): " + " | ".join(tail[-8:]))
    try:
        data: dict[str, Any] = json.loads(lines[-1])
    except ValueError as exc:
        raise PeerUnavailable(f"the driver printed no JSON result: {lines[-1][:200]!r}") from exc
    return data


def table(result: PeerResult) -> str:
    """The peer's figures, one line each."""
    if not result.available:
        return f"Stream Framework: unavailable ({result.reason})"
    return "\n".join(
        [
            f"Stream Framework {result.version}, {result.followers:,} followers",
            f"  flat fanout          {result.flat_writes_per_s:>10,.0f} feed-writes/s",
            f"  notification fanout  {result.notification_writes_per_s:>10,.0f} feed-writes/s",
            f"  feed[:25] reads      {result.reads_per_s:>10,.0f} reads/s "
            f"(p50 {result.read_p50_ms:.2f} ms, p99 {result.read_p99_ms:.2f} ms)",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/5",
        help="a db of the peer's own (it writes only keys under sfpeer:)",
    )
    parser.add_argument("--followers", type=int, default=10_000)
    parser.add_argument("--activities", type=int, default=3)
    parser.add_argument("--reads-seconds", type=float, default=5.0)
    parser.add_argument("--keep-keys", action="store_true", help="leave the peer's feeds in Redis")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run_peer(
        args.redis_url,
        followers=args.followers,
        activities=args.activities,
        reads_seconds=args.reads_seconds,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
        keep_keys=args.keep_keys,
    )
    print(json.dumps(asdict(result), indent=2) if args.json else table(result))


if __name__ == "__main__":
    main()
