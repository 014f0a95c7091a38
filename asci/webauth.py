"""Who is making an HTTP request: the login session (``session["user_id"]``) or a bearer token.

Shared by every blueprint that acts for a user (rpmrepo uploads, the broker and ci APIs, pages).
"""

from __future__ import annotations

from flask import request, session
from sqlalchemy.orm import Session

from asci.accounts import User, user_for_token


def bearer_token() -> str:
    """The token of an ``Authorization: Bearer ...`` header, or ""."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def request_user(db_session: Session) -> User | None:
    """The active user behind this request, or None.

    A bearer token, when one is sent, decides alone (an invalid one is None even with a login
    session); otherwise the login session does.
    """
    token = bearer_token()
    if token:
        return user_for_token(db_session, token)
    user_id = session.get("user_id")
    user = db_session.get(User, int(user_id)) if user_id is not None else None
    return user if user is not None and user.is_active else None
