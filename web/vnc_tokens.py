"""Short-lived signed tokens that open one session's VNC WebSocket, and every rule of what they open.

A token is ``itsdangerous.TimestampSigner`` over ``"<user id>.<session id>.<share id>.<nonce>"`` with the
application's secret key (share 0: the session's owner; otherwise a guest's live share,
``broker.shares``). The viewer proxy (``web.viewer_proxy``) calls :func:`admit` for every new
WebSocket: a missing, forged or expired token, or one whose user does not own the session (or the
session is not running), admits nothing and the connection is refused. A token admits one WebSocket,
once: its random nonce is recorded when it is admitted (``broker.shares.use_viewer_token``) and a second
connection with it is refused (the viewer asks for a fresh token for every connection). The VNC
password is never part of the token.

What a token opens is the session's VNC socket, and only once the broker has locked it
(``broker.checked_socket``: a root-owned socket in a root-only folder, never a symlink), so nothing a
desktop does can redirect a viewer; for a desktop on a node with an agent it is a private
one-connection bridge here (``broker.open_viewer``) whose connection goes to the agent's relay over
mutual TLS, the agent's certificate verified, with a fresh single-use ticket naming the session, the
node and the viewer (websockify's own ``--ssl-target`` verifies nothing). While viewers are connected the proxy asks, for all of them at
once: :func:`touch_sessions` every ``vnc_touch_interval_s`` (the idle clock of ``broker.cull``) and
:func:`still_admitted` every ``viewer_check_interval_s`` (a guest's share revoked, ended or changed in
mode, an owner disabled or a session ended: that viewer is closed and reconnects with a fresh token);
:func:`record_opened` / :func:`record_seen` / :func:`record_closed` keep "who is connected".
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass, field
from typing import Iterable

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner

import broker
from asci import accounts
from asci.config import Settings
from asci.db import session_scope
from asci.http import secret_key

log = logging.getLogger(__name__)
SALT = "asci.vnc-token"
SEEN_EVERY_S = 10.0  # how often an open connection is marked seen (broker.shares: stale after 30 s)


def _signer(settings: Settings) -> TimestampSigner:
    return TimestampSigner(secret_key(settings), salt=SALT)


@dataclass(frozen=True)
class TokenClaim:
    """Who a token lets in where: the user, the session, and the share it goes through (0: the owner)."""

    user_id: int
    session_id: int
    share_id: int = 0
    nonce: str = field(default="", compare=False)  # what makes the token single-use; viewers of one desktop
    # admitted alike are still one admission to check (``still_admitted``)


def make_token(settings: Settings, user_id: int, session_id: int, share_id: int = 0) -> str:
    """A token for ``user_id`` to open session ``session_id`` (the owner), or to open it through the share
    ``share_id`` (a guest); valid ``vnc_token_ttl_s`` seconds."""
    nonce = secrets.token_urlsafe(12)
    return _signer(settings).sign(f"{int(user_id)}.{int(session_id)}.{int(share_id)}.{nonce}".encode()).decode()


def read_token(settings: Settings, token: str) -> TokenClaim | None:
    """What a valid, unexpired token claims; None otherwise."""
    if not token or len(token) > 200:
        return None
    try:
        payload = _signer(settings).unsign(token.encode(), max_age=settings.vnc_token_ttl_s).decode()
        user_part, session_part, share_part, nonce = payload.split(".")
        return TokenClaim(int(user_part), int(session_part), int(share_part), nonce)
    except (BadSignature, SignatureExpired, ValueError, UnicodeDecodeError):
        return None



@dataclass(frozen=True)
class Admission:
    """What a valid token admits: its claim, the locked socket it opens and, for a guest, the share's mode."""

    claim: TokenClaim
    socket: str
    mode: str | None = None
    relay: object | None = None  # broker's RelayRequest: a node agent's relay opened from the event loop


def _target_of(db, claim: TokenClaim, user: accounts.User, desktops: broker.Broker) -> tuple[str, str | None] | None:
    """The socket (and a guest's mode) the claim opens: the owner's own running session, or a live share."""
    if claim.share_id:
        try:
            target = broker.shares.guest_target(db, claim.share_id, user)
        except broker.NotFound:
            return None
        return (target.socket, target.mode) if target.session_id == claim.session_id else None
    try:
        desktop = broker.get_session(db, claim.session_id, user)
    except broker.NotFound:
        return None
    if desktop.user_id != user.id:  # only the owner's viewer, never an administrator's
        return None
    try:
        return desktops.vnc_target(claim.session_id, user).socket, None
    except broker.BrokerError:  # not running
        return None


def admit(settings: Settings, desktops: broker.Broker, token: str, native_relay: bool = False) -> Admission | None:
    """What ``token`` opens now (restarting the session's idle clock; ``desktops``: the broker asked), or
    None when it opens nothing. ``native_relay``: a session on a node with an agent is admitted with the
    agent's relay request (for a caller that speaks TLS to the agent itself) instead of a local bridge."""
    claim = read_token(settings, token)
    if claim is None:
        return None
    with session_scope(settings) as db:
        user = db.get(accounts.User, claim.user_id)
        if user is None or not user.is_active:
            return None
        target = _target_of(db, claim, user, desktops)
        if target is None:
            return None
        if not broker.shares.use_viewer_token(db, claim.nonce, dt.timedelta(seconds=settings.vnc_token_ttl_s + 5)):
            log.warning("session %s: a viewer token was used a second time; refused", claim.session_id)
            return None
    viewer = f"share:{claim.share_id}" if claim.share_id else "owner"
    relay = broker.agent_relay(settings, target[0], viewer) if native_relay else None
    # a node with an agent: its relay request, or a bridge to its relay
    path = "" if relay is not None else broker.open_viewer(settings, target[0], viewer)
    if path is None:
        log.warning("session %s: socket %s is not a locked session socket; refused", claim.session_id, target[0])
        return None
    try:
        desktops.touch(claim.session_id)
    except broker.BrokerError as exc:
        log.warning("touch of session %s failed: %s", claim.session_id, exc)
    return Admission(claim, path, target[1], relay)


def resolve(settings: Settings, desktops: broker.Broker, token: str) -> tuple[str, str] | None:
    """``("unix_socket", path)`` of the VNC server the token opens, or None when it opens nothing."""
    admission = admit(settings, desktops, token)
    return ("unix_socket", admission.socket) if admission else None


def still_admitted(settings: Settings, admissions: Iterable[Admission]) -> list[bool]:
    """For each admission, whether its viewer may stay connected: the owner's while the owner is active and
    the session runs; a guest's while the share is live in the mode it was admitted with (one database
    session for all of them)."""
    admissions = list(admissions)
    answers: dict[Admission, bool] = {}  # many viewers share one admission: each is asked once
    with session_scope(settings) as db:
        for admission in admissions:
            if admission in answers:
                continue
            claim = admission.claim
            if claim.share_id:
                answers[admission] = broker.shares.live_mode(db, claim.share_id, claim.user_id) == admission.mode
                continue
            user = db.get(accounts.User, claim.user_id)
            try:
                desktop = broker.get_session(db, claim.session_id, user) if user is not None else None
            except broker.NotFound:
                desktop = None
            answers[admission] = bool(user is not None and user.is_active and desktop is not None
                                      and desktop.state == broker.SessionState.RUNNING)
    return [answers[admission] for admission in admissions]


def touch_sessions(desktops: broker.Broker, session_ids: Iterable[int]) -> set[int]:
    """Restart the idle clock of every session with a viewer connected; the ids of those no longer running."""
    ended = set()
    for session_id in session_ids:
        try:
            if not desktops.touch(session_id):
                ended.add(session_id)
        except Exception as exc:  # noqa: BLE001 - a database hiccup must not end a viewer's connection
            log.warning("touch of session %s failed: %s", session_id, exc)
    return ended


def record_opened(settings: Settings, claim: TokenClaim) -> int:
    """Record a viewer's new connection (who is connected, for the owner; a guest's is audited); its id."""
    with session_scope(settings) as db:
        return broker.shares.connection_opened(db, claim.session_id, claim.user_id, claim.share_id or None)


def record_seen(settings: Settings, connection_ids: Iterable[int]) -> None:
    """These connections are still open."""
    with session_scope(settings) as db:
        broker.shares.connections_seen(db, connection_ids)


def record_closed(settings: Settings, connection_ids: Iterable[int]) -> None:
    """These connections ended."""
    with session_scope(settings) as db:
        for connection_id in connection_ids:
            broker.shares.connection_closed(db, connection_id)
