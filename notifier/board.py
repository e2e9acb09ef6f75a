"""The operators' board: what every web and worker process reports about itself, in one place.

The operator page (notifier/web/admin.py) is served by whichever web process the load
balancer picks, yet shows every process. Each process writes a snapshot of itself every
``INTERVAL`` seconds into the broker's Redis (one hash field per process), pushes its recent
warnings and errors onto a capped list, and reads which users an operator is inspecting
(a sorted set scored by expiry) so that its snapshot carries those users' connections. No
process talks to another; a process that stops writing drops off the board after
``STALE`` seconds. With the in-process broker (memory storage, one process) the board is
that process alone.

Keys, under the fanout namespace: ``<ns>:ops:procs`` (hash: process id → JSON snapshot),
``<ns>:ops:errors`` (list, newest first, ``KEEP_ERRORS`` long), ``<ns>:ops:watch`` (sorted
set: user → until when an inspector wants their details).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

INTERVAL = 2.0
"""Seconds between two snapshots of one process."""
STALE = 10.0
"""A process silent this long is off the board (and its field deleted after ``FORGET``)."""
FORGET = 300.0
KEEP_ERRORS = 200
WATCH_SECONDS = 60.0
"""How long one look at a user keeps their connection details in the snapshots."""

PROCESS_ID = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"
"""This process on the board: host, pid, and a nonce (a restarted process may reuse a pid)."""
STARTED = time.time()


@dataclass(frozen=True)
class Keys:
    procs: str
    errors: str
    watch: str


def keys(namespace: str) -> Keys:
    return Keys(f"{namespace}:ops:procs", f"{namespace}:ops:errors", f"{namespace}:ops:watch")


class ErrorRing(logging.Handler):
    """Keeps this process's recent WARNING and ERROR lines: all of the last ``size`` for the
    board of a single process, and those not yet written to Redis for the shared board.
    Installed on the root logger by ``configure_logging``."""

    def __init__(self, size: int = 100) -> None:
        super().__init__(logging.WARNING)
        self.recent: deque[dict[str, Any]] = deque(maxlen=size)
        self.unsent: deque[dict[str, Any]] = deque(maxlen=size)
        self._lock_unsent = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        # The handler's own filters (request id, redaction) ran before this.
        try:
            message = record.getMessage()
        except Exception:  # a line that cannot be formatted must not break the caller
            return
        entry = {
            "time": record.created,
            "process": PROCESS_ID,
            "level": record.levelname,
            "logger": record.name,
            "message": message[:1000],
            "request_id": getattr(record, "request_id", None),
        }
        self.recent.append(entry)
        with self._lock_unsent:
            self.unsent.append(entry)

    def take_unsent(self) -> list[dict[str, Any]]:
        with self._lock_unsent:
            taken = list(self.unsent)
            self.unsent.clear()
        return taken


#: The process's ring, once ``install_error_ring`` ran (``notifier serve``, ``notifier worker``).
ERRORS: ErrorRing | None = None


def install_error_ring(filters: Sequence[logging.Filter] = ()) -> ErrorRing:
    """Attach the process's ``ErrorRing`` to the root logger (once)."""
    global ERRORS
    if ERRORS is None:
        ERRORS = ErrorRing()
        for check in filters:
            ERRORS.addFilter(check)
    root = logging.getLogger()
    if ERRORS not in root.handlers:
        root.addHandler(ERRORS)
    return ERRORS


def local_errors() -> list[dict[str, Any]]:
    """This process's recent warnings and errors, newest first."""
    return list(reversed(ERRORS.recent)) if ERRORS is not None else []


def envelope(kind: str, snapshot: dict[str, Any]) -> dict[str, Any]:
    """``snapshot`` with who and when."""
    return {
        "id": PROCESS_ID,
        "kind": kind,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": STARTED,
        "seen": time.time(),
        **snapshot,
    }


def live(raw: Mapping[Any, Any], now: float) -> tuple[list[dict[str, Any]], list[Any]]:
    """Snapshots of live processes from the hash, and the fields to forget."""
    found, forget = [], []
    for field, value in raw.items():
        try:
            snapshot = json.loads(value)
        except ValueError:
            forget.append(field)
            continue
        age = now - float(snapshot.get("seen", 0))
        if age > FORGET:
            forget.append(field)
        elif age <= STALE:
            found.append(snapshot)
    found.sort(key=lambda s: (s.get("kind", ""), s.get("id", "")))
    return found, forget


class SyncReporter:
    """A worker's reporter: a daemon thread writing ``snapshot()`` with the broker's
    synchronous client every ``INTERVAL`` (the worker's threads are busy with jobs)."""

    def __init__(self, client: Any, namespace: str, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.client = client
        self.keys = keys(namespace)
        self.snapshot = snapshot
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="notifier-board", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with contextlib.suppress(Exception):  # else the field goes stale by itself
            self.client.hdel(self.keys.procs, PROCESS_ID)

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            try:
                self.report()
            except Exception as exc:  # the broker is down: the next beat tries again
                logging.getLogger(__name__).debug("board report failed: %r", exc)

    def report(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.keys.procs, PROCESS_ID, json.dumps(envelope("worker", self.snapshot())))
        push_errors(pipe, self.keys)
        pipe.execute()


def push_errors(pipe: Any, k: Keys) -> None:
    """Queue this process's unsent warnings and errors onto the board's list."""
    unsent = ERRORS.take_unsent() if ERRORS is not None else []
    if unsent:
        pipe.lpush(k.errors, *[json.dumps(e) for e in unsent])
        pipe.ltrim(k.errors, 0, KEEP_ERRORS - 1)
