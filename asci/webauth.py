"""Who is making an HTTP request, and the one way a route demands a user.

A request is made by the login session (``flask.session``: ``user_id`` and the account's
``session_epoch`` when it logged in) or by an API token (``Authorization: Bearer <token>``).
Routes call :func:`require_user` before they read the request body, so an anonymous request is
refused without its body being parsed.

What a caller may do: a login session may do everything its account may; a token only what its
scopes say as well (``require_user(db, scope="sessions")``; ``admin=True`` needs an administrator
and, for a token, the ``admin`` scope).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import request, session
from sqlalchemy.orm import Session

from asci.accounts import SCOPE_ADMIN, ApiToken, User, token_for
from asci.errors import Forbidden, Unauthorized

WWW_AUTHENTICATE = 'Bearer realm="asci"'


class NotAuthenticated(Unauthorized):
    """No login session and no valid token (answered with ``WWW-Authenticate``)."""

    www_authenticate = WWW_AUTHENTICATE


@dataclass(frozen=True)
class Caller:
    """The account behind a request, and the token it came with (None: the login session)."""

    user: User
    token: ApiToken | None = None

    def allows(self, scope: str) -> bool:
        """True when the caller may act within ``scope`` (a login session may do all its account may)."""
        return self.token is None or self.token.allows(scope)

    @property
    def is_admin(self) -> bool:
        """An administrator acting as one (a token needs the ``admin`` scope for that)."""
        return bool(self.user.is_admin) and self.allows(SCOPE_ADMIN)


def bearer_token() -> str:
    """The token of an ``Authorization: Bearer ...`` header, or ""."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def start_login_session(user: User) -> None:
    """A fresh login cookie for ``user`` (the old cookie's data is dropped), bound to its session epoch."""
    session.clear()
    session["user_id"] = int(user.id)
    session["epoch"] = int(user.session_epoch or 0)
    session.permanent = True


def cookie_user(db: Session) -> User | None:
    """The active user of the login cookie when the cookie is of the account's current session epoch."""
    user_id, epoch = session.get("user_id"), session.get("epoch")
    if not isinstance(user_id, int) or not isinstance(epoch, int):
        return None
    user = db.get(User, user_id)
    if user is None or not user.is_active or int(user.session_epoch or 0) != epoch:
        return None
    return user


def caller(db: Session, *, bearer_only: bool = False) -> Caller | None:
    """Who makes this request, or None.

    A bearer token, when one is sent, decides alone (an invalid one is None even with a login
    session); otherwise the login session does, unless ``bearer_only``.
    """
    token = bearer_token()
    if token or "Authorization" in request.headers:
        row = token_for(db, token)
        return Caller(row.user, row) if row is not None else None
    if bearer_only:
        return None
    user = cookie_user(db)
    return Caller(user) if user is not None else None


def request_user(db: Session, *, bearer_only: bool = False) -> User | None:
    """The active user behind this request, or None."""
    found = caller(db, bearer_only=bearer_only)
    return found.user if found is not None else None


def _unauthenticated(bearer_only: bool) -> NotAuthenticated:
    if "Authorization" in request.headers:
        return NotAuthenticated("invalid, expired or revoked API token")
    return NotAuthenticated("a valid API token is required (Authorization: Bearer <token>)" if bearer_only
                            else "log in or send an API token (Authorization: Bearer <token>)")


def require_caller(db: Session, scope: str | None = None, *, admin: bool = False,
                   bearer_only: bool = False) -> Caller:
    """The caller; :class:`NotAuthenticated` (401) or :class:`Forbidden` (403) when it may not do this."""
    found = caller(db, bearer_only=bearer_only)
    if found is None:
        raise _unauthenticated(bearer_only)
    if admin and not found.user.is_admin:
        raise Forbidden("administrators only")
    if admin and not found.is_admin:
        raise Forbidden(f"this API token lacks the {SCOPE_ADMIN!r} scope")
    if scope is not None and not found.allows(scope):
        raise Forbidden(f"this API token lacks the {scope!r} scope")
    return found


def require_user(db: Session, scope: str | None = None, *, admin: bool = False, bearer_only: bool = False) -> User:
    """The user behind this request (see :func:`require_caller`)."""
    return require_caller(db, scope, admin=admin, bearer_only=bearer_only).user


def require_admin_or(db: Session, scope: str) -> Caller:
    """An administrator, or a token carrying ``scope`` (``metrics`` for monitoring robots)."""
    found = caller(db)
    if found is None:
        raise _unauthenticated(False)
    if not (found.is_admin or (found.token is not None and found.token.allows(scope))):
        raise Forbidden(f"administrators, or an API token with the {scope!r} scope, only")
    return found


def optional_caller(db: Session, *, bearer_only: bool = False) -> Caller | None:
    """The caller, None for an anonymous request, :class:`NotAuthenticated` for a bad token."""
    found = caller(db, bearer_only=bearer_only)
    if found is None and "Authorization" in request.headers:
        raise _unauthenticated(bearer_only)
    return found
