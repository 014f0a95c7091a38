"""Users and their API tokens: shared by every package that acts for someone."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import Boolean, ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from asci.db import Base, UTCDateTime, utcnow
from asci.errors import AccountError

__all__ = ["AccountError", "User", "ApiToken", "create_user", "get_user", "issue_token", "user_for_token"]


class User(Base):
    """A person (or robot account) who logs in, publishes or launches."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    uid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    gid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # "<issuer>|<subject>" of the single sign-on identity this account belongs to (None: local only)
    external_id: Mapped[str | None] = mapped_column(String(400), unique=True, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    tokens: Mapped[list["ApiToken"]] = relationship(back_populates="user", cascade="all, delete-orphan")

    def set_password(self, password: str) -> None:
        """Store a salted hash of ``password`` (never the password)."""
        if len(password) < 8:
            raise AccountError("password must have at least 8 characters")
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        """True when ``password`` matches the stored hash."""
        return bool(self.password_hash) and check_password_hash(self.password_hash, password)


class ApiToken(Base):
    """A bearer token for the HTTP API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    user: Mapped[User] = relationship(back_populates="tokens")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(db: Session, username: str, password: str | None = None, *, is_admin: bool = False,
                display_name: str = "", uid: int | None = None, gid: int | None = None) -> User:
    """Add a user; refuses a taken or malformed user name."""
    import re

    if not re.fullmatch(r"[a-z_][a-z0-9_.\-]{0,63}", username):
        raise AccountError(f"user name {username!r}: expected lower-case letters, digits, '.', '-' or '_'")
    if db.scalar(select(User).where(User.username == username)) is not None:
        raise AccountError(f"user {username!r} already exists")
    user = User(username=username, display_name=display_name or username, is_admin=is_admin, uid=uid, gid=gid)
    if password is not None:
        user.set_password(password)
    db.add(user)
    db.flush()
    return user


def get_user(db: Session, username: str) -> User:
    """The user called ``username``, or an error saying there is none."""
    user = db.scalar(select(User).where(User.username == username))
    if user is None:
        raise AccountError(f"no user {username!r}")
    return user


def issue_token(db: Session, user: User, name: str = "") -> str:
    """Create an API token for ``user`` and return it (shown once, stored hashed)."""
    token = "asci_" + secrets.token_urlsafe(32)
    db.add(ApiToken(user=user, name=name, token_sha256=_digest(token)))
    db.flush()
    return token


TOKEN_USE_RESOLUTION = dt.timedelta(minutes=1)


def user_for_token(db: Session, token: str) -> User | None:
    """The active user owning ``token``, or None."""
    if not token:
        return None
    row = db.scalar(select(ApiToken).where(ApiToken.token_sha256 == _digest(token)))
    if row is None or not row.user.is_active:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at >= TOKEN_USE_RESOLUTION:
        row.last_used_at = now  # a write per minute at most, not one (and a commit) per API call
    return row.user
