"""The error hierarchy: every failure a caller can cause has one type, mapped once to a response."""

from __future__ import annotations


class NotifierError(Exception):
    """Root of every error notifier raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidInput(NotifierError):
    """The caller sent a value that breaks a documented rule or limit."""

    code = "invalid"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field=field)


class ConfigError(NotifierError):
    """The configuration cannot be used; raised at start, never during a request."""

    code = "config"


class NotFound(NotifierError):
    """The thing named does not exist (or is not visible to the caller)."""

    code = "not_found"


class Conflict(NotifierError):
    """The request contradicts what is stored."""

    code = "conflict"


class Busy(NotifierError):
    """Every connection to a backend stayed in use for the whole pool timeout: the server is
    overloaded for now, the backend is not down (HTTP 503 ``busy``, never "unreachable")."""

    code = "busy"


#: Exceptions (by class name, anywhere in the class's MRO) meaning "a backend is down for now"
#: in redis-py and cassandra-driver, as opposed to a bug: answered with 503 / close 1013.
_OUTAGES = frozenset({
    "OSError", "ConnectionError", "TimeoutError", "BusyLoadingError", "NoHostAvailable",
    "OperationTimedOut", "Unavailable", "ReadTimeout", "WriteTimeout",
    "ConnectionException",  # cassandra-driver: a node's connection closed under a request
})  # fmt: skip


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says a backend (storage, broker) cannot be reached right now."""
    return any(cls.__name__ in _OUTAGES for cls in type(exc).__mro__)


def is_transient(exc: BaseException) -> bool:
    """Whether waiting and trying again may help: an outage, or a busy backend."""
    return isinstance(exc, Busy) or is_outage(exc)
