"""Who is calling: API keys for app backends, signed expiring user tokens for browsers."""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import jwt

from notifier.errors import NotifierError
from notifier.model import check_user_id

ALGORITHM = "HS256"
#: Verified tokens remembered per process (one per active browser session).
_VERIFIED_TOKENS = 10_000
AUDIENCE = "notifier"


class Unauthorized(NotifierError):
    """No credentials, or credentials that do not verify (HTTP 401)."""

    code = "unauthorized"


class Forbidden(NotifierError):
    """Valid credentials that do not allow this (HTTP 403)."""

    code = "forbidden"


@dataclass(frozen=True)
class UserClaims:
    """What a verified user token allows: one user's feeds, optionally only some groups."""

    user: str
    feeds: tuple[str, ...] | None
    expires: int

    def allows(self, group: str) -> bool:
        """Whether the token covers the ``group`` feed of its user."""
        return self.feeds is None or group in self.feeds


class ApiKeys:
    """The configured server keys; comparison in constant time so timing leaks nothing."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = [k.encode() for k in keys]

    def check(self, presented: str) -> str:
        """The key's short fingerprint (for rate limits and logs) or Unauthorized."""
        candidate = presented.encode()
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(candidate, key)
        if not matched:
            raise Unauthorized("invalid API key")
        return presented[:6]


class UserTokens:
    """Issue and verify user tokens: JWT HS256 with ``sub``, ``exp``, ``aud`` and ``feeds``."""

    def __init__(self, secret: str, default_ttl: int, max_ttl: int) -> None:
        self._secret = secret
        self.default_ttl = default_ttl
        self.max_ttl = max_ttl
        self._verified: OrderedDict[str, UserClaims] = OrderedDict()
        """Tokens already verified: a browser sends the same one with every request, and a
        signature check costs more than the rest of a page read's auth. Expiry is still
        checked on every use."""

    @property
    def cached(self) -> int:
        """Verified tokens remembered now (at most 10,000)."""
        return len(self._verified)

    def issue(
        self, user: str, ttl: int | None = None, feeds: Sequence[str] | None = None
    ) -> tuple[str, int]:
        """A token for ``user`` and its expiry (epoch seconds)."""
        check_user_id(user, "user")
        now = int(time.time())
        expires = now + min(ttl or self.default_ttl, self.max_ttl)
        claims: dict[str, object] = {"sub": user, "iat": now, "exp": expires, "aud": AUDIENCE}
        if feeds is not None:
            claims["feeds"] = list(feeds)
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), expires

    def verify(self, token: str) -> UserClaims:
        """The claims of a valid, unexpired token; Unauthorized otherwise (reason included)."""
        known = self._verified.get(token)
        if known is not None:
            if known.expires <= time.time():
                del self._verified[token]
                raise Unauthorized("user token expired")
            self._verified.move_to_end(token)
            return known
        claims = self._verify(token)
        self._verified[token] = claims
        if len(self._verified) > _VERIFIED_TOKENS:
            self._verified.popitem(last=False)
        return claims

    def _verify(self, token: str) -> UserClaims:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                options={"require": ["sub", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("user token expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid user token: {exc}") from None
        user = claims["sub"]
        feeds = claims.get("feeds")
        if not isinstance(user, str) or (
            feeds is not None
            and not (isinstance(feeds, list) and all(isinstance(f, str) for f in feeds))
        ):
            raise Unauthorized("invalid user token: malformed claims")
        return UserClaims(user, tuple(feeds) if feeds is not None else None, int(claims["exp"]))


def bearer(header: str | None) -> str:
    """The credential in ``Authorization: Bearer <credential>``, or Unauthorized."""
    if not header:
        raise Unauthorized("missing Authorization header (Bearer <API key or user token>)")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthorized("Authorization header must be 'Bearer <credential>'")
    return credential.strip()


def looks_like_token(credential: str) -> bool:
    """User tokens are JWTs (three dot-separated parts); API keys have no dots."""
    return credential.count(".") == 2
