"""Sharing a running desktop with experiment colleagues, and who is connected to it.

The owner shares a session with a member of the session's experiment, ``view`` or ``control``.
The guest opens it through their own login: websockify gets a token bound to the guest and the
share, and the guest's viewer gets the session's view-only VNC password for ``view`` (the VNC
server ignores that connection's input) or the full one for ``control``; never anything of the
owner's. Knowing a VNC password opens nothing by itself: the VNC socket is reachable only through
websockify, and websockify only with a live token.

A share is live while it is not revoked and its session runs, so it ends with the session. The
websockify process of a guest's connection checks the share every ``viewer_check_interval_s`` and
closes the connection once it is no longer live (revoke disconnects within seconds) or its mode
changed (the guest's viewer reconnects with the password of the new mode). Every share,
revocation and guest connection is written to the audit log.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from asci import audit
from asci.accounts import User
from asci.db import utcnow
from broker import logs, rundir
from broker.agent_client import AgentNode, parse_socket_uri
from broker.backends.base import NodeRef
from broker.errors import BackendError, BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from broker.models import (DesktopSession, ExperimentMember, SessionShare, SessionState, ShareMode,
                           ViewerConnection, ViewerTokenUse)
from broker.service import new_password

SHAREABLE_STATES = (SessionState.PENDING, SessionState.STARTING, SessionState.RUNNING)
# A connection not renewed for this long is over (its websockify process died without saying so).
CONNECTION_STALE_AFTER = dt.timedelta(seconds=30)


@dataclass(frozen=True)
class ShareView:
    """A share as its owner and guest see it."""

    id: int
    session_id: int
    owner: str
    guest: str
    mode: str
    environment: str
    version: str
    experiment: str
    created_at: str
    connected: bool

    def as_dict(self) -> dict:
        """The JSON shape."""
        return dict(self.__dict__)


def _owned_session(db: Session, session_id: int, owner: User) -> DesktopSession:
    desktop = db.get(DesktopSession, session_id)
    if desktop is None or desktop.user_id != owner.id:
        raise NotFound(f"no session {session_id}")
    return desktop


def _is_member(db: Session, experiment_id: int, user_id: int) -> bool:
    return db.scalar(select(ExperimentMember.id).where(ExperimentMember.experiment_id == experiment_id,
                                                       ExperimentMember.user_id == user_id)) is not None


def _live(share: SessionShare | None) -> bool:
    """Not revoked, its session runs, its owner and guest are active and the guest is still a member of the
    session's experiment (an account disabled, or a guest taken off the experiment, ends the share)."""
    if share is None or share.revoked_at is not None or share.session.state not in SHAREABLE_STATES:
        return False
    desktop = share.session
    if not desktop.user.is_active or not share.guest.is_active:
        return False
    return _is_member(Session.object_session(share), desktop.experiment_id, share.guest_id)


def rotate_password(db: Session, desktop: DesktopSession) -> bool:
    """Give a running desktop a new full VNC password (file and database); False when it has no running
    VNC server yet (its password file is written from the database when it starts).

    Done on every share change, before it is committed: a password a guest was handed while it had
    control opens nothing after a downgrade, a revocation or a new view-only share. Connections already
    open stay open (TigerVNC checks the password file only when a client authenticates); the owner's
    viewer gets the new password with its next token."""
    if desktop.state != SessionState.RUNNING or not desktop.vnc_socket:
        return False
    password = new_password()
    remote = parse_socket_uri(desktop.vnc_socket)
    if remote is not None:  # a node on another machine: its agent rewrites the file there
        agent = AgentNode.of(NodeRef.of(desktop.node)) if desktop.node is not None else None
        if agent is None:
            raise BackendError(f"session {desktop.id}: its node has no agent to change the password with")
        agent.rewrite_password(remote[1], password, desktop.vnc_view_password)
    else:
        folder = rundir.folder_of_socket(desktop.vnc_socket)
        if folder is None:
            return False
        rundir.rewrite_password(folder, password, desktop.vnc_view_password)
    desktop.vnc_password = password
    db.flush()
    return True


def members_to_invite(db: Session, session_id: int, owner: User) -> list[str]:
    """User names of the session's experiment members (active, not the owner) it may be shared with."""
    desktop = _owned_session(db, session_id, owner)
    return list(db.scalars(select(User.username).join(ExperimentMember, ExperimentMember.user_id == User.id)
                           .where(ExperimentMember.experiment_id == desktop.experiment_id, User.id != owner.id,
                                  User.is_active.is_(True)).order_by(User.username)))


def share(db: Session, session_id: int, owner: User, guest_name: str, mode: str) -> SessionShare:
    """Share the owner's session with ``guest_name`` (``view`` or ``control``); an existing live share with
    that guest changes mode. Only members of the session's experiment may be invited."""
    try:
        mode = ShareMode(mode)
    except ValueError:
        raise BadRequest(f"mode must be one of {', '.join(m.value for m in ShareMode)}, not {mode!r}") from None
    desktop = _owned_session(db, session_id, owner)
    if desktop.state not in SHAREABLE_STATES:
        raise Conflict(f"session {session_id} is {desktop.state}: only a running desktop can be shared")
    guest = db.scalar(select(User).where(User.username == guest_name)) if isinstance(guest_name, str) else None
    member = guest is not None and guest.is_active and db.scalar(
        select(ExperimentMember.id).where(ExperimentMember.experiment_id == desktop.experiment_id,
                                          ExperimentMember.user_id == guest.id)) is not None
    if guest is not None and guest.id == owner.id:
        raise Unprocessable("the desktop is already yours: share it with another member of the experiment")
    if not member:  # the same answer for "no such user" and "not a member": names are not probed
        raise Forbidden(f"{guest_name!r} is not a member of experiment {desktop.experiment.code}; "
                        "a desktop is shared only within its experiment")
    existing = db.scalar(select(SessionShare).where(SessionShare.session_id == desktop.id,
                                                    SessionShare.guest_id == guest.id,
                                                    SessionShare.revoked_at.is_(None)))
    if existing is not None and existing.mode == mode:
        return existing
    try:
        rotate_password(db, desktop)
    except BackendError as exc:
        raise Conflict(f"the share was not changed: {exc}") from None
    if existing is not None:
        if existing.mode != mode:
            audit.record(db, owner.username, "share.mode", f"session {desktop.id}", guest=guest.username,
                         mode=str(mode), was=existing.mode, share=existing.id)
            existing.mode = mode
        return existing
    row = SessionShare(session_id=desktop.id, guest_id=guest.id, mode=mode)
    db.add(row)
    db.flush()
    audit.record(db, owner.username, "share.create", f"session {desktop.id}", guest=guest.username,
                 mode=str(mode), share=row.id, experiment=desktop.experiment.code,
                 environment=f"{desktop.environment} {desktop.version}")
    return row


def revoke(db: Session, session_id: int, share_id: int, owner: User) -> SessionShare:
    """Revoke one of the owner's shares (the guest's viewer is disconnected within seconds)."""
    desktop = _owned_session(db, session_id, owner)
    row = db.get(SessionShare, share_id)
    if row is None or row.session_id != desktop.id:
        raise NotFound(f"no share {share_id} of session {session_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        try:
            rotate_password(db, desktop)
        except BackendError as exc:  # the revocation stands: the guest gets no token for this desktop any more
            logs.event("share.rotate_failed", session=desktop.id, share=row.id, error=str(exc))
        audit.record(db, owner.username, "share.revoke", f"session {desktop.id}", guest=row.guest.username,
                     share=row.id)
    return row


def shares_of(db: Session, session_id: int, owner: User) -> list[ShareView]:
    """The live shares of the owner's session, with whether each guest is connected now."""
    desktop = _owned_session(db, session_id, owner)
    rows = db.scalars(select(SessionShare).where(SessionShare.session_id == desktop.id,
                                                 SessionShare.revoked_at.is_(None)).order_by(SessionShare.id))
    connected = _connected_shares(db, desktop.id)
    return [_view(row, row.id in connected) for row in rows if _live(row)]


def shared_with(db: Session, guest: User) -> list[ShareView]:
    """The live shares of other users' desktops with ``guest`` ("Shared with me")."""
    rows = db.scalars(select(SessionShare).join(DesktopSession, DesktopSession.id == SessionShare.session_id)
                      .where(SessionShare.guest_id == guest.id, SessionShare.revoked_at.is_(None),
                             DesktopSession.state.in_([str(s) for s in SHAREABLE_STATES]))
                      .order_by(SessionShare.id.desc()))
    return [_view(row, False) for row in rows if _live(row)]


def guest_share(db: Session, share_id: int, guest: User) -> SessionShare:
    """The live share ``share_id`` of ``guest`` (NotFound otherwise, without saying why)."""
    row = db.get(SessionShare, share_id)
    if row is None or row.guest_id != guest.id or not guest.is_active or not _live(row):
        raise NotFound(f"no desktop shared with you as {share_id}")
    return row


@dataclass(frozen=True)
class GuestTarget:
    """What a guest's viewer connects to: the session's socket and the password of the share's mode."""

    session_id: int
    socket: str
    password: str
    mode: str


def guest_target(db: Session, share_id: int, guest: User) -> GuestTarget:
    """The VNC socket and the password a live share gives its guest (view-only unless ``control``);
    NotFound when the share is not live or its desktop is not running yet."""
    row = guest_share(db, share_id, guest)
    desktop = row.session
    if desktop.state != SessionState.RUNNING or not desktop.vnc_socket:
        raise NotFound(f"session {desktop.id} is not running")
    password = desktop.vnc_password if row.mode == ShareMode.CONTROL else desktop.vnc_view_password
    return GuestTarget(desktop.id, desktop.vnc_socket, password, row.mode)


def live_mode(db: Session, share_id: int, guest_id: int) -> str | None:
    """The mode of the guest's share while it still opens its desktop, else None (websockify asks this
    while a guest is connected: a revoked share, or one whose mode changed, ends the connection)."""
    row = db.get(SessionShare, share_id)
    live = row is not None and row.guest_id == guest_id and row.guest.is_active and _live(row)
    return row.mode if live else None


def owner_may_view(db: Session, session_id: int, user_id: int) -> bool:
    """Whether the owner's open viewer may stay connected: the account is active and the session runs
    (websockify asks this while the owner is connected: disabling an account ends its viewers)."""
    desktop = db.get(DesktopSession, session_id)
    return (desktop is not None and desktop.user_id == user_id and desktop.user.is_active
            and desktop.state == SessionState.RUNNING)


def use_viewer_token(db: Session, nonce: str, lifetime: dt.timedelta) -> bool:
    """Record that the viewer token ``nonce`` opens its WebSocket now; False when it already did (a token
    opens one connection, once). Records older than ``lifetime`` (expired tokens) are deleted."""
    if not isinstance(nonce, str) or not 8 <= len(nonce) <= 64:
        return False
    db.execute(delete(ViewerTokenUse).where(ViewerTokenUse.used_at < utcnow() - lifetime))
    try:
        with db.begin_nested():
            db.add(ViewerTokenUse(nonce=nonce, used_at=utcnow()))
    except IntegrityError:
        return False
    return True


def _view(row: SessionShare, connected: bool) -> ShareView:
    desktop = row.session
    return ShareView(id=row.id, session_id=desktop.id, owner=desktop.user.username, guest=row.guest.username,
                     mode=row.mode, environment=desktop.environment, version=desktop.version,
                     experiment=desktop.experiment.code, created_at=row.created_at.isoformat(), connected=connected)


# ------------------------------------------------------------------ viewers' connections
def connection_opened(db: Session, session_id: int, user_id: int, share_id: int | None) -> int:
    """Record a viewer's new connection; its id (a guest's is audited)."""
    row = ViewerConnection(session_id=session_id, user_id=user_id, share_id=share_id)
    db.add(row)
    db.flush()
    if share_id:
        guest = db.get(User, user_id)
        audit.record(db, guest.username if guest else str(user_id), "share.connect", f"session {session_id}",
                     share=share_id)
    return row.id


def connection_seen(db: Session, connection_id: int) -> None:
    """The connection is still open."""
    connections_seen(db, [connection_id])


def connections_seen(db: Session, connection_ids) -> None:
    """These connections are still open (one statement for all of them)."""
    ids = list(connection_ids)
    if ids:
        db.execute(update(ViewerConnection).where(ViewerConnection.id.in_(ids), ViewerConnection.ended_at.is_(None))
                   .values(last_seen_at=utcnow()))


def connection_closed(db: Session, connection_id: int) -> None:
    """The connection ended."""
    db.execute(update(ViewerConnection).where(ViewerConnection.id == connection_id, ViewerConnection.ended_at.is_(None))
               .values(ended_at=utcnow()))


def _open_connections(db: Session, session_id: int):
    return (select(ViewerConnection).where(ViewerConnection.session_id == session_id,
                                           ViewerConnection.ended_at.is_(None),
                                           ViewerConnection.last_seen_at > utcnow() - CONNECTION_STALE_AFTER))


def _connected_shares(db: Session, session_id: int) -> set[int]:
    return {row.share_id for row in db.scalars(_open_connections(db, session_id)) if row.share_id}


def viewers(db: Session, session_id: int, owner: User) -> list[dict]:
    """Who is connected to the owner's session now: ``[{user, share, mode, since}]`` (the owner too)."""
    desktop = _owned_session(db, session_id, owner)
    out = []
    for row in db.scalars(_open_connections(db, desktop.id).order_by(ViewerConnection.id)):
        share_row = db.get(SessionShare, row.share_id) if row.share_id else None
        out.append({"user": row.user.username, "share": row.share_id,
                    "mode": share_row.mode if share_row else "owner", "since": row.connected_at.isoformat()})
    return out
