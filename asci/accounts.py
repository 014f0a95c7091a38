"""Users, their API tokens and the scopes a token carries: shared by every package that acts for someone.

Lifecycle: an account is created (``create_user``, or at a first single sign-on login), may be
disabled (``disable_user``: its web sessions end, its tokens are revoked, the broker stops its
desktops after a grace period) and enabled again; its password changes with ``change_password``.
Every login cookie carries the account's ``session_epoch``; logging out, changing the password and
disabling the account move the epoch on, so every cookie issued before stops working.

API tokens carry scopes (:data:`SCOPES`) and an expiry; only their SHA-256 is stored.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
import secrets
from typing import Iterable

from sqlalchemy import Boolean, ForeignKey, Integer, String, bindparam, select
from sqlalchemy.orm import Mapped, Session, joinedload, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from asci.db import Base, UTCDateTime, utcnow
from asci.errors import AccountError

__all__ = ["AccountError", "User", "ApiToken", "create_user", "get_user", "issue_token", "user_for_token",
           "token_for", "list_tokens", "revoke_token", "authenticate", "disable_user", "enable_user",
           "change_password", "end_web_sessions", "external_identity", "link_identity", "unlink_identity",
           "user_by_identity", "list_users", "parse_scopes", "scope_allows", "SCOPES", "DEFAULT_SCOPES",
           "SCOPE_SESSIONS", "SCOPE_ADMIN", "SCOPE_METRICS", "PUBLISH_SCOPE_PREFIX", "USERNAME_PATTERN"]

USERNAME_PATTERN = r"[a-z_][a-z0-9_.\-]{0,63}"

SCOPE_SESSIONS = "sessions"  # launch, list and stop one's own desktop sessions
SCOPE_ADMIN = "admin"  # the administrators' API (nodes, health, builds, everyone's sessions); administrators only
SCOPE_METRICS = "metrics"  # /metrics and the details of /healthz
PUBLISH_SCOPE_PREFIX = "publish:"  # publish:<repo> (or publish:*): upload RPMs where the account holds a grant
SCOPES = {
    SCOPE_SESSIONS: "launch, list and stop your own desktop sessions",
    SCOPE_ADMIN: "the administrators' API (administrators' tokens only)",
    SCOPE_METRICS: "read /metrics and the details of /healthz",
    PUBLISH_SCOPE_PREFIX + "<repo>": "publish RPMs into <repo> (needs a publisher grant; publish:* for any)",
}
DEFAULT_SCOPES = (SCOPE_SESSIONS,)
_SCOPE_RE = re.compile(r"(sessions|admin|metrics|publish:(\*|[a-z0-9][a-z0-9_\-]{0,62}))")


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
    # created by a first single sign-on login: its name came from the identity provider, so nothing
    # granted by name (an experiment import) may bind to it
    self_registered: Mapped[bool] = mapped_column(Boolean, default=False)
    # every login cookie carries the epoch it was issued in; moving it on ends them all
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    tokens: Mapped[list["ApiToken"]] = relationship(back_populates="user", cascade="all, delete-orphan")

    def set_password(self, password: str) -> None:
        """Store a salted hash of ``password`` (never the password)."""
        if len(password) < 8:
            raise AccountError("password must have at least 8 characters")
        if len(password) > 1024:
            raise AccountError("password must have at most 1024 characters")
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        """True when ``password`` matches the stored hash."""
        return bool(self.password_hash) and check_password_hash(self.password_hash, password)


class ApiToken(Base):
    """A bearer token for the HTTP API; only its SHA-256 is stored. ``scopes``: space-separated."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(500), default=SCOPE_SESSIONS)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    user: Mapped[User] = relationship(back_populates="tokens")

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()

    def allows(self, scope: str) -> bool:
        """True when this token carries ``scope`` (``publish:*`` carries every ``publish:<repo>``)."""
        return scope_allows(self.scope_list, scope)

    def state(self, now: dt.datetime | None = None) -> str:
        """``active``, ``expired`` or ``revoked``."""
        now = now or utcnow()
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def as_dict(self) -> dict:
        """What ``asci user token list`` shows (never the token)."""
        iso = lambda value: value.isoformat() if value else None  # noqa: E731
        return {"id": self.id, "user": self.user.username, "name": self.name, "scopes": self.scope_list,
                "state": self.state(), "created_at": iso(self.created_at), "expires_at": iso(self.expires_at),
                "revoked_at": iso(self.revoked_at), "last_used_at": iso(self.last_used_at)}


# ------------------------------------------------------------------ scopes

def parse_scopes(values: Iterable[str] | str) -> tuple[str, ...]:
    """Checked, de-duplicated scopes (a string is split on spaces and commas)."""
    if isinstance(values, str):
        values = re.split(r"[\s,]+", values)
    scopes = []
    for value in values:
        value = value.strip()
        if not value:
            continue
        if not _SCOPE_RE.fullmatch(value):
            raise AccountError(f"unknown scope {value!r}: expected {', '.join(SCOPES)}")
        if value not in scopes:
            scopes.append(value)
    if not scopes:
        raise AccountError(f"a token needs at least one scope: {', '.join(SCOPES)}")
    return tuple(scopes)


def scope_allows(granted: Iterable[str], wanted: str) -> bool:
    """True when the ``granted`` scopes include ``wanted``."""
    granted = set(granted)
    if wanted in granted:
        return True
    return wanted.startswith(PUBLISH_SCOPE_PREFIX) and PUBLISH_SCOPE_PREFIX + "*" in granted


# ------------------------------------------------------------------ users

def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


MIN_UID = 1000  # the first uid of a person's account on the facility's machines
MAX_UID = 2**31 - 1


def create_user(db: Session, username: str, password: str | None = None, *, is_admin: bool = False,
                display_name: str = "", uid: int | None = None, gid: int | None = None) -> User:
    """Add a user; refuses a taken or malformed user name, and a uid or gid below ``MIN_UID`` or a uid
    another account has."""
    if not isinstance(username, str) or not re.fullmatch(USERNAME_PATTERN, username):
        raise AccountError(f"user name {username!r}: expected lower-case letters, digits, '.', '-' or '_'")
    if db.scalar(select(User).where(User.username == username)) is not None:
        raise AccountError(f"user {username!r} already exists")
    for name, number in (("uid", uid), ("gid", gid)):
        if number is not None and (isinstance(number, bool) or not isinstance(number, int)
                                   or not MIN_UID <= number <= MAX_UID):
            raise AccountError(f"{name} {number!r}: expected {MIN_UID} to {MAX_UID} (below {MIN_UID} are the "
                               "system's accounts: root is 0)")
    if uid is not None:
        holder = db.scalar(select(User.username).where(User.uid == uid))
        if holder is not None:
            raise AccountError(f"uid {uid} is already {holder!r}'s: each account needs a uid of its own "
                               "(its desktops and files on /data would be the other's)")
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


def list_users(db: Session) -> list[User]:
    """Every account, by name."""
    return list(db.scalars(select(User).order_by(User.username)))


_DUMMY_HASH: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(generate_password_hash(secrets.token_urlsafe(16)))
    return _DUMMY_HASH[0]


def authenticate(db: Session, username: str, password: str) -> User | None:
    """The active user ``username`` when ``password`` is theirs, else None.

    Exactly one password hash is checked whatever the outcome (a made-up one for unknown names,
    disabled accounts and accounts without a password), so the answer takes as long for a name
    that does not exist as for one that does: the time tells nothing about which names exist.
    """
    user = None
    if isinstance(username, str) and re.fullmatch(USERNAME_PATTERN, username or ""):
        user = db.scalar(select(User).where(User.username == username))
    usable = user is not None and user.is_active and bool(user.password_hash)
    matches = check_password_hash(user.password_hash if usable else _dummy_hash(), password or "")
    return user if usable and matches else None


def end_web_sessions(db: Session, user: User) -> None:
    """Invalidate every login cookie of ``user`` (logout, password change, disabling)."""
    user.session_epoch = (user.session_epoch or 0) + 1
    db.flush()


def change_password(db: Session, user: User, password: str) -> None:
    """Set a new password; every existing login cookie of the user stops working."""
    user.set_password(password)
    end_web_sessions(db, user)


def disable_user(db: Session, user: User) -> int:
    """Disable ``user``: no login, web sessions ended, tokens revoked; returns the number of tokens revoked.

    The broker's cull loop stops the user's desktops once ``disabled_user_grace_s`` has passed.
    """
    now = utcnow()
    if user.is_active or user.disabled_at is None:
        user.disabled_at = now
    user.is_active = False
    end_web_sessions(db, user)
    revoked = 0
    for token in user.tokens:
        if token.revoked_at is None:
            token.revoked_at = now
            revoked += 1
    db.flush()
    return revoked


def enable_user(db: Session, user: User) -> None:
    """Let a disabled user log in again (their revoked tokens stay revoked)."""
    user.is_active = True
    user.disabled_at = None
    db.flush()


# ------------------------------------------------------------------ single sign-on identities

def external_identity(issuer: str, subject: str) -> str:
    """The ``external_id`` of the identity ``subject`` at ``issuer``."""
    if not issuer or not subject:
        raise AccountError("a single sign-on identity needs an issuer and a subject")
    if any(not ch.isprintable() for ch in issuer + subject) or "|" in issuer:
        raise AccountError("a single sign-on issuer or subject contains control characters or '|'")
    identity = f"{issuer}|{subject}"
    if len(identity) > 400:
        raise AccountError("a single sign-on identity longer than 400 characters")
    return identity


def user_by_identity(db: Session, issuer: str, subject: str) -> User | None:
    """The account bound to ``subject`` at ``issuer``, or None."""
    return db.scalar(select(User).where(User.external_id == external_identity(issuer, subject)))


def link_identity(db: Session, user: User, issuer: str, subject: str) -> None:
    """Bind ``user`` to a single sign-on identity (refused when another account holds it)."""
    identity = external_identity(issuer, subject)
    holder = db.scalar(select(User).where(User.external_id == identity))
    if holder is not None and holder.id != user.id:
        raise AccountError(f"that identity belongs to account {holder.username!r}; unlink it there first "
                           f"(asci user unlink {holder.username})")
    user.external_id = identity
    db.flush()


def unlink_identity(db: Session, user: User) -> str | None:
    """Remove the single sign-on identity of ``user``; returns the one it had."""
    previous, user.external_id = user.external_id, None
    end_web_sessions(db, user)
    return previous


# ------------------------------------------------------------------ API tokens

def issue_token(db: Session, user: User, name: str = "", scopes: Iterable[str] | str = DEFAULT_SCOPES,
                lifetime: dt.timedelta | None = None) -> str:
    """Create an API token for ``user`` and return it (shown once, stored hashed).

    ``lifetime`` None: the token never expires. The ``admin`` scope is for administrators only.
    """
    checked = parse_scopes(scopes)
    if SCOPE_ADMIN in checked and not user.is_admin:
        raise AccountError(f"only administrators' tokens may carry the {SCOPE_ADMIN!r} scope")
    if not user.is_active:
        raise AccountError(f"user {user.username!r} is disabled")
    if lifetime is not None and lifetime.total_seconds() <= 0:
        raise AccountError("a token's lifetime must be positive")
    token = "asci_" + secrets.token_urlsafe(32)
    db.add(ApiToken(user=user, name=name[:100], token_sha256=_digest(token), scopes=" ".join(checked),
                    expires_at=utcnow() + lifetime if lifetime is not None else None))
    db.flush()
    return token


TOKEN_USE_RESOLUTION = dt.timedelta(minutes=1)


@functools.cache
def _token_statement():
    """The token look-up with its user (one query per API call, not two), built once with the digest as a
    bound parameter: every API request runs it, and building it anew costs more than the query itself."""
    return (select(ApiToken).where(ApiToken.token_sha256 == bindparam("digest"))
            .options(joinedload(ApiToken.user, innerjoin=True)))


def token_for(db: Session, token: str) -> ApiToken | None:
    """The valid (not revoked, not expired) token row of an active user, or None; marks it used."""
    if not token or len(token) > 200 or not token.isascii():
        return None
    row = db.scalar(_token_statement(), {"digest": _digest(token)})
    if row is None or row.state() != "active" or not row.user.is_active:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at >= TOKEN_USE_RESOLUTION:
        row.last_used_at = now  # a write per minute at most, not one (and a commit) per API call
    return row


def user_for_token(db: Session, token: str) -> User | None:
    """The active user owning the valid ``token``, or None."""
    row = token_for(db, token)
    return row.user if row is not None else None


def list_tokens(db: Session, user: User | None = None, include_inactive: bool = False) -> list[ApiToken]:
    """Tokens (of ``user``, or everyone's), oldest first; revoked and expired ones on request."""
    statement = select(ApiToken).order_by(ApiToken.id)
    if user is not None:
        statement = statement.where(ApiToken.user_id == user.id)
    rows = list(db.scalars(statement))
    return rows if include_inactive else [row for row in rows if row.state() == "active"]


def revoke_token(db: Session, token_id: int, user: User | None = None) -> ApiToken:
    """Revoke token ``token_id`` (of ``user`` when given); revoking twice is a no-op."""
    row = db.get(ApiToken, token_id)
    if row is None or (user is not None and row.user_id != user.id):
        raise AccountError(f"no token {token_id}" + (f" of user {user.username!r}" if user is not None else ""))
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        db.flush()
    return row
