"""Who is making an HTTP request, and the one way a route demands a user.

A request is made by the login session (``flask.session["user_id"]``, set at login) or by an
API token (``Authorization: Bearer <token>``). Routes call :func:`require_user` before they read
the request body, so an anonymous request is refused without its body being parsed.
"""

from __future__ import annotations

from flask import request, session
from sqlalchemy.orm import Session

from asci.accounts import User, user_for_token
from asci.errors import Forbidden, Unauthorized

WWW_AUTHENTICATE = 'Bearer realm="asci"'


class NotAuthenticated(Unauthorized):
    """No login session and no valid token (answered with ``WWW-Authenticate``)."""

    www_authenticate = WWW_AUTHENTICATE


def bearer_token() -> str:
    """The token of an ``Authorization: Bearer ...`` header, or ""."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def request_user(db: Session, *, bearer_only: bool = False) -> User | None:
    """The active user behind this request, or None.

    A bearer token, when one is sent, decides alone (an invalid one is None even with a login
    session); otherwise the login session does, unless ``bearer_only``.
    """
    token = bearer_token()
    if token:
        return user_for_token(db, token)
    if bearer_only:
        return None
    user_id = session.get("user_id")
    user = db.get(User, user_id) if isinstance(user_id, int) else None
    return user if user is not None and user.is_active else None


def require_user(db: Session, *, admin: bool = False, bearer_only: bool = False) -> User:
    """The user behind this request; :class:`NotAuthenticated` (401) or :class:`Forbidden` (403) otherwise."""
    user = request_user(db, bearer_only=bearer_only)
    if user is None:
        if bearer_token():
            raise NotAuthenticated("invalid API token")
        raise NotAuthenticated("a valid API token is required (Authorization: Bearer <token>)" if bearer_only
                               else "log in or send an API token (Authorization: Bearer <token>)")
    if admin and not user.is_admin:
        raise Forbidden("administrators only")
    return user
