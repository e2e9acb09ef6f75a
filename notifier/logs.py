"""Log output of notifier's processes: one line per event, plain or JSON, with the request id.

uvicorn configures only its own loggers; without this, notifier's own INFO lines went nowhere
and its warnings and errors reached stderr as bare messages, with no level to grep for.

``NOTIFIER_LOG_FORMAT=json`` writes one JSON object per line (time, level, logger, pid,
message, request_id, and the traceback as ``exc``) for log shippers. Either way, a line written
while a request or a fanout job of that request is handled carries its ``request_id``
(notifier/context.py).

Nothing secret reaches a line: every handler masks the configured secret and API keys, the
admin password, anything shaped like a user token (a JWT), ``Bearer`` credentials and URL
passwords, whatever code wrote the line (a driver's exception message included).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping

from notifier import context

FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
FORMATS = ("plain", "json")
MASK = "[redacted]"

#: Environment variables whose values are secrets, wherever they might be echoed.
SECRET_VARIABLES = ("NOTIFIER_SECRET", "NOTIFIER_API_KEYS", "NOTIFIER_ADMIN_PASSWORD")

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{8,}")
_BEARER = re.compile(r"(?i)(bearer[ .:=]+)[^\s,;\"']+")
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)[^@\s/]+@")


class Redactor(logging.Filter):
    """Masks secrets in a record's final message (and traceback), on the handler."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a key that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        text = _JWT.sub(MASK, text)
        text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
        return _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + "@", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


class RequestIdFilter(logging.Filter):
    """Puts the current request id (or None) on every record as ``request_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = context.request_id.get()
        return True


class PlainFormatter(logging.Formatter):
    """``FORMAT``, then `` request_id=…`` when the line belongs to a request."""

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        if rid is None:
            return line
        head, newline, rest = line.partition("\n")  # after the message, before a traceback
        return f"{head} request_id={rid}{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid is not None:
            entry["request_id"] = rid
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def log_format(env: Mapping[str, str] | None = None) -> str:
    """``NOTIFIER_LOG_FORMAT`` (plain by default); a ValueError names a bad value."""
    value = (os.environ if env is None else env).get("NOTIFIER_LOG_FORMAT", "plain") or "plain"
    if value not in FORMATS:
        raise ValueError(f"NOTIFIER_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {value!r}")
    return value


def secrets_from(env: Mapping[str, str]) -> list[str]:
    """The secret values configured in ``env`` (API keys split on commas)."""
    found: list[str] = []
    for name in SECRET_VARIABLES:
        found += [part.strip() for part in env.get(name, "").split(",") if part.strip()]
    return found


def configure_logging(level: str, env: Mapping[str, str] | None = None) -> None:
    """Send every logger that propagates to the root (notifier's, uvicorn's, the drivers')
    to stderr, in the configured format, with request ids and secrets masked."""
    env = os.environ if env is None else env
    try:
        fmt = log_format(env)
    except ValueError as exc:  # as every configuration error: one line, exit status 2
        print(f"notifier: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    filters = [RequestIdFilter(), Redactor(secrets_from(env))]
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())
    for check in filters:
        handler.addFilter(check)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request at INFO: a line per webhook delivery. Deliveries log what
    # matters themselves (failures, dead letters); httpx's own warnings still show.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    # The operator page's "recent errors" (notifier/board.py), filtered the same way.
    from notifier.board import install_error_ring

    install_error_ring(filters)
