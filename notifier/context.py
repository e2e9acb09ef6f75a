"""What follows one activity across processes: the request id of the POST that brought it,
and when that POST arrived.

Both live in context variables: the web process sets them per request (notifier/web/observe.py),
fanout carries them in each job message's options, and a worker sets them again while it runs
that job (notifier/fanout/observe.py); every log line written meanwhile carries the request
id (notifier/logs.py), and the job's end measures fanout lag from the arrival.
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("notifier_request_id", default=None)
accepted_ms: ContextVar[int | None] = ContextVar("notifier_accepted_ms", default=None)
"""Unix time in milliseconds when the request that started the work arrived."""

#: What an incoming ``X-Request-Id`` may be (a proxy's id is kept, anything else replaced): it
#: goes into log lines, so no spaces, quotes or control characters, and not a novel.
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def new_request_id() -> str:
    """A fresh id: 16 hex digits, unique enough to grep for across a day of logs."""
    return secrets.token_hex(8)


def accept_request_id(offered: str | None) -> str:
    """The id to use for a request that came with ``offered`` (a proxy's ``X-Request-Id``)."""
    if offered is not None and _ACCEPTABLE.fullmatch(offered):
        return offered
    return new_request_id()
