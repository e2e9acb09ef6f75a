"""Server settings from the environment (and an optional ``[server]`` TOML table).

Validated once at start: a missing secret or a malformed value raises ConfigError with one
line that names the variable, which ``notifier serve`` prints instead of a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from notifier.errors import ConfigError
from notifier.realtime.settings import RealtimeSettings, uvicorn_options
from notifier.web.http_protocol import GuardedHttpProtocol

MIN_SECRET = 32
MIN_API_KEY = 16


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: ``rate`` requests per second on average, bursts up to ``burst``."""

    rate: float
    burst: int


@dataclass(frozen=True)
class ServerSettings:
    """Everything the web layer needs beyond the core Config."""

    secret: str
    """Signs user tokens (HS256). From NOTIFIER_SECRET; never from a file in the repo."""
    api_keys: tuple[str, ...]
    """Server API keys; several so they can be rotated (NOTIFIER_API_KEYS, comma-separated)."""
    allowed_origins: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8000
    token_ttl: int = 3600
    """Default lifetime of an issued user token, seconds."""
    max_token_ttl: int = 7 * 86400
    max_body_bytes: int = 1 << 20
    max_connections: int = 20_000
    """Open connections (HTTP and websocket) per web process; past it, HTTP requests get
    503 (uvicorn's ``limit_concurrency``)."""
    keep_alive: float = 5.0
    """Seconds an idle keep-alive HTTP connection stays open after a response."""
    header_timeout: float = 10.0
    """Seconds a request has to send its whole head (request line and headers); then 408."""
    key_rate: RateLimit = RateLimit(1000.0, 2000)
    user_rate: RateLimit = RateLimit(50.0, 100)
    auth_fail_rate: RateLimit = RateLimit(0.5, 20)
    """Failed credentials (401) per client address: 20 at once, then one every 2 s; past
    that, 429 before any credential is checked."""
    realtime: RealtimeSettings = field(default_factory=RealtimeSettings)
    metrics: str = "api_key"
    """Who may read ``/metrics``: ``api_key`` (a server API key as Bearer), ``public`` (no
    credential: a private network only), or ``off``."""
    access_log: bool = True
    """One log line per HTTP request (notifier/web/observe.py)."""
    admin_password: str | None = None
    """The operator page's password (HTTP Basic, user ``admin``); from
    NOTIFIER_ADMIN_PASSWORD only. Without it ``/admin`` is not served."""

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return (
            f"ServerSettings(api_keys=<{len(self.api_keys)}>, origins={self.allowed_origins}, "
            f"host={self.host!r}, port={self.port})"
        )

    @classmethod
    def load(
        cls, table: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> ServerSettings:
        """Environment variables win over the ``[server]`` table; secrets come only from env."""
        env = os.environ if env is None else env
        table = dict(table or {})
        allowed = {
            "allowed_origins", "host", "port", "token_ttl", "max_token_ttl", "max_body_bytes",
            "max_connections", "keep_alive", "header_timeout",
            "key_rate", "key_burst", "user_rate", "user_burst", "auth_fail_rate",
            "auth_fail_burst",
            "ws_max_message_bytes", "ws_send_queue", "ws_max_per_user", "ws_ping_interval",
            "ws_idle_timeout", "ws_auth_timeout", "ws_resume_limit", "ws_compression",
            "ws_send_buffer", "ws_slow_timeout", "ws_close_timeout", "ws_outage_grace",
            "ws_restart_window", "ws_slot_ttl", "metrics", "access_log",
        }  # fmt: skip
        unknown = set(table) - allowed
        if unknown:
            raise ConfigError(f"server: unknown setting(s) {', '.join(sorted(unknown))}")

        def pick(name: str) -> Any:
            variable = f"NOTIFIER_{name.upper()}"
            return env[variable] if variable in env else table.get(name)

        secret = env.get("NOTIFIER_SECRET", "")
        if len(secret) < MIN_SECRET:
            raise ConfigError(
                f"NOTIFIER_SECRET must be set to at least {MIN_SECRET} characters "
                '(e.g. python -c "import secrets; print(secrets.token_urlsafe(32))")'
            )
        keys = tuple(k.strip() for k in env.get("NOTIFIER_API_KEYS", "").split(",") if k.strip())
        if not keys:
            raise ConfigError("NOTIFIER_API_KEYS must list at least one API key (comma-separated)")
        if any(len(k) < MIN_API_KEY for k in keys):
            raise ConfigError(f"NOTIFIER_API_KEYS: every key needs {MIN_API_KEY}+ characters")
        origins = pick("allowed_origins") or ()
        if isinstance(origins, str):
            origins = tuple(o.strip() for o in origins.split(",") if o.strip())
        for origin in origins:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
                raise ConfigError(
                    f"NOTIFIER_ALLOWED_ORIGINS: {origin!r} is not an origin like https://app.example"
                )
        return cls(
            secret=secret,
            api_keys=keys,
            allowed_origins=tuple(origins),
            host=str(pick("host") or "127.0.0.1"),
            port=_int(pick("port"), "port", 8000, 1, 65535),
            token_ttl=_int(pick("token_ttl"), "token_ttl", 3600, 1, 365 * 86400),
            max_token_ttl=_int(pick("max_token_ttl"), "max_token_ttl", 7 * 86400, 1, 365 * 86400),
            max_body_bytes=_int(pick("max_body_bytes"), "max_body_bytes", 1 << 20, 1024, 1 << 30),
            max_connections=_int(pick("max_connections"), "max_connections", 20_000, 1, 10_000_000),
            keep_alive=_float(pick("keep_alive"), "keep_alive", 5.0),
            header_timeout=_float(pick("header_timeout"), "header_timeout", 10.0),
            key_rate=RateLimit(
                _float(pick("key_rate"), "key_rate", 1000.0),
                _int(pick("key_burst"), "key_burst", 2000, 1, 10**9),
            ),
            user_rate=RateLimit(
                _float(pick("user_rate"), "user_rate", 50.0),
                _int(pick("user_burst"), "user_burst", 100, 1, 10**9),
            ),
            auth_fail_rate=RateLimit(
                _float(pick("auth_fail_rate"), "auth_fail_rate", 0.5),
                _int(pick("auth_fail_burst"), "auth_fail_burst", 20, 1, 10**9),
            ),
            realtime=_realtime(pick),
            metrics=_choice(pick("metrics"), "metrics", ("api_key", "public", "off"), "api_key"),
            access_log=_bool(pick("access_log"), "access_log", True),
            admin_password=_admin_password(env),
        )


def _realtime(pick: Any) -> RealtimeSettings:
    d = RealtimeSettings()
    restart_window = _float(
        pick("ws_restart_window"), "ws_restart_window", d.restart_window, allow_zero=True
    )
    if restart_window > 3600:  # clients would wait that long to come back (and inf breaks)
        raise ConfigError("NOTIFIER_WS_RESTART_WINDOW must be at most 3600 (seconds)")
    slot_ttl = _float(pick("ws_slot_ttl"), "ws_slot_ttl", d.slot_ttl)
    if not 1 <= slot_ttl <= 86400:  # refreshed every third of it: not many times a second
        raise ConfigError("NOTIFIER_WS_SLOT_TTL must be between 1 and 86400 (seconds)")
    return RealtimeSettings(
        max_message_bytes=_int(
            pick("ws_max_message_bytes"),
            "ws_max_message_bytes",
            d.max_message_bytes,
            256,
            1 << 24,
        ),
        send_queue=_int(pick("ws_send_queue"), "ws_send_queue", d.send_queue, 1, 1 << 20),
        max_per_user=_int(pick("ws_max_per_user"), "ws_max_per_user", d.max_per_user, 1, 10**6),
        slot_ttl=slot_ttl,
        ping_interval=_float(
            pick("ws_ping_interval"), "ws_ping_interval", d.ping_interval, allow_zero=True
        ),
        idle_timeout=_float(pick("ws_idle_timeout"), "ws_idle_timeout", d.idle_timeout),
        auth_timeout=_float(pick("ws_auth_timeout"), "ws_auth_timeout", d.auth_timeout),
        resume_limit=_int(pick("ws_resume_limit"), "ws_resume_limit", d.resume_limit, 100, 10_000),
        compression=_bool(pick("ws_compression"), "ws_compression", d.compression),
        send_buffer=_int(pick("ws_send_buffer"), "ws_send_buffer", d.send_buffer, 1024, 1 << 30),
        slow_timeout=_float(
            pick("ws_slow_timeout"), "ws_slow_timeout", d.slow_timeout, allow_zero=True
        ),
        close_timeout=_float(pick("ws_close_timeout"), "ws_close_timeout", d.close_timeout),
        outage_grace=_float(
            pick("ws_outage_grace"), "ws_outage_grace", d.outage_grace, allow_zero=True
        ),
        restart_window=restart_window,
    )


def _choice(value: Any, name: str, choices: tuple[str, ...], default: str) -> str:
    if value is None:
        return default
    if value not in choices:
        raise ConfigError(
            f"NOTIFIER_{name.upper()} must be one of {', '.join(choices)}, got {value!r}"
        )
    return str(value)


def _admin_password(env: Mapping[str, str]) -> str | None:
    password = env.get("NOTIFIER_ADMIN_PASSWORD") or None
    if password is not None and len(password) < MIN_API_KEY:
        raise ConfigError(f"NOTIFIER_ADMIN_PASSWORD needs {MIN_API_KEY}+ characters")
    return password


def _int(value: Any, name: str, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"NOTIFIER_{name.upper()} must be an integer, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigError(f"NOTIFIER_{name.upper()} must be between {low} and {high}")
    return number


def _float(value: Any, name: str, default: float, *, allow_zero: bool = False) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"NOTIFIER_{name.upper()} must be a number, got {value!r}") from None
    if number < 0 or (number == 0 and not allow_zero) or number != number:
        raise ConfigError(f"NOTIFIER_{name.upper()} must be positive")
    return number


def _bool(value: Any, name: str, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"NOTIFIER_{name.upper()} must be true or false, got {value!r}")


def server_options(settings: ServerSettings) -> dict[str, Any]:
    """Every uvicorn option ``notifier serve`` (and ``notifier demo``) runs with: the
    websocket protocol and its limits, and the HTTP side's deadlines and connection cap."""
    return {
        **uvicorn_options(settings.realtime),
        "http": GuardedHttpProtocol.configured(header_timeout=settings.header_timeout),
        "timeout_keep_alive": settings.keep_alive,
        "limit_concurrency": settings.max_connections,
    }
