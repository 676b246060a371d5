"""Who may use the annotation page: a token printed at start-up, kept in a cookie, and a CSRF
token in every form.

Opening `/login?token=T` sets an HttpOnly, SameSite=Strict session cookie; every page but the
login and static files needs it, so another site (or another local user's browser) can neither
read the traces nor label. Every POST also carries a CSRF field derived from the token (a page of
another origin cannot read it) and, when the browser sends one, an Origin of this server.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SESSION_COOKIE = "evaluator_annotate_session"
CSRF_FIELD = "csrf"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def csrf_token(token: str) -> str:
    return hmac.new(token.encode(), b"csrf", hashlib.sha256).hexdigest()


def same(given: str, expected: str) -> bool:
    """Constant-time comparison, so response times tell nothing about the token."""
    return hmac.compare_digest(given.encode(), expected.encode())


def origin_allowed(origin: str | None, scheme: str, host: str) -> bool:
    """No Origin header (an older browser, or a same-origin GET) passes; else it must be ours."""
    return origin is None or origin == f"{scheme}://{host}"
