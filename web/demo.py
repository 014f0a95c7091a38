"""Prepare the embedded demo: a demo user, and everything later issues add to it."""

from __future__ import annotations

from typing import Iterator

from sqlalchemy import select

from asci import accounts, db
from asci.config import Settings


def prepare_demo(settings: Settings, username: str, password: str) -> Iterator[str]:
    """Create or reset the demo user's password; yields progress lines."""
    with db.session_scope(settings) as session:
        user = session.scalar(select(accounts.User).where(accounts.User.username == username))
        if user is None:
            user = accounts.create_user(session, username, password, is_admin=True)
            yield f"created demo user {username}"
        else:
            user.set_password(password)
            yield f"reset password of demo user {username}"
