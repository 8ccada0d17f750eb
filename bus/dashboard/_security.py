"""Who may write: the write token, a session cookie derived from it, and CSRF tokens.

No server-side sessions: the cookie holds ``HMAC(token, "session")`` (never the token itself),
``HttpOnly`` and ``SameSite=Strict``; every write form carries ``HMAC(token, "csrf")``. Both can
only be made by someone who knows the token, and a page of another site can neither read the
cookie nor guess the CSRF value, so a write needs a logged-in browser submitting our own form.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

__all__ = ["COOKIE", "WriteGuard"]

COOKIE = "bus_dashboard_session"


class WriteGuard:
    """Checks write access for one dashboard (``token`` None: read-only, nothing may write)."""

    def __init__(self, token: str | None) -> None:
        self._key = token.encode() if token is not None else None

    @property
    def enabled(self) -> bool:
        """True when the dashboard was started with a write token."""
        return self._key is not None

    def _mac(self, purpose: str) -> str:
        assert self._key is not None
        return hmac.new(self._key, purpose.encode(), hashlib.sha256).hexdigest()

    def check_token(self, given: str) -> bool:
        """True when ``given`` is the write token (constant-time)."""
        return self._key is not None and hmac.compare_digest(given.encode(), self._key)

    def session_value(self) -> str:
        """The cookie value of a logged-in browser."""
        return self._mac("session")

    def csrf_token(self) -> str:
        """The value every write form must carry."""
        return self._mac("csrf")

    def logged_in(self, request: Request) -> bool:
        """True when the request carries a valid session cookie."""
        cookie = request.cookies.get(COOKIE, "")
        return self._key is not None and hmac.compare_digest(cookie, self.session_value())

    def may_write(self, request: Request, csrf: str) -> bool:
        """True for a logged-in browser submitting the right CSRF token."""
        return self.logged_in(request) and hmac.compare_digest(csrf, self.csrf_token())
