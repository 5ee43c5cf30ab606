"""The web console's session cookie and its CSRF tokens: stateless, so any instance of the
`orchestrate` function (or a restarted `agentfleet serve`) accepts what another one issued.

A session is `<nonce>.<expires>.<mac>`: a random nonce, a Unix expiry and an HMAC-SHA256 of both
under a key derived from the API token. Its CSRF token is another HMAC of the nonce under the
same key: a page from another site can neither read the HttpOnly cookie nor compute the token.
Rotating the API token ends every session.

A server without a token (a platform authenticates in front, as IAM does for the function) still
issues a session, for CSRF: its key is public, which leaves the token as strong as a double-submit
cookie (a forged cookie needs a way to write cookies for this origin).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

COOKIE = "agentfleet_console"
LIFETIME_S = 12 * 3600
_CONTEXT = b"agentfleet console session v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Session:
    nonce: str
    expires: int
    signed_in: bool
    """Made by signing in with the API token (not issued for CSRF alone, by a server without one)."""


class Sessions:
    """Issues and checks session cookies and CSRF tokens for one API token (or none)."""

    def __init__(self, token: bytes | None) -> None:
        self.token = token
        self._key = hmac.new(token or b"", _CONTEXT, hashlib.sha256).digest()

    def _mac(self, *parts: str) -> str:
        return _b64(hmac.new(self._key, "|".join(parts).encode(), hashlib.sha256).digest())

    def token_matches(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.strip().encode(), self.token)

    def issue(self, now: float | None = None) -> tuple[Session, str]:
        """A new session and its cookie value."""
        nonce = _b64(secrets.token_bytes(18))
        expires = int(now if now is not None else time.time()) + LIFETIME_S
        session = Session(nonce, expires, signed_in=self.token is not None)
        return session, f"{nonce}.{expires}.{self._mac('session', nonce, str(expires))}"

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie value holds, or None (absent, forged, expired or malformed)."""
        if not cookie or len(cookie) > 200:
            return None
        nonce, _, rest = cookie.partition(".")
        expires, _, mac = rest.partition(".")
        if not (nonce and expires.isdigit() and mac):
            return None
        if not hmac.compare_digest(mac, self._mac("session", nonce, expires)):
            return None
        if int(expires) < (now if now is not None else time.time()):
            return None
        return Session(nonce, int(expires), signed_in=self.token is not None)

    def csrf(self, session: Session) -> str:
        return self._mac("csrf", session.nonce)

    def csrf_matches(self, session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given), self.csrf(session))
