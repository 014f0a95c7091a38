"""Short-lived signed tokens that open one session's VNC WebSocket, and websockify's plugin for them.

A token is ``itsdangerous.TimestampSigner`` over ``"<user id>.<session id>.<share id>"`` with the
application's secret key (share 0: the session's owner; otherwise a guest's live share,
``broker.shares``). websockify (started with ``--token-plugin
web.vnc_tokens.SessionTokens --token-source <data_dir>``) calls ``lookup(token)``
for every new connection: a missing, forged or expired token, or one whose user
does not own the session (or the session is not running), resolves to nothing and
the connection is refused. The VNC password is never part of the token.

What a token opens is ``("unix_socket", path)``: the session's VNC socket, and only once the
broker has locked it (``broker.checked_socket``: a root-owned socket in a root-only folder, never
a symlink), so nothing a desktop does can redirect a viewer. websockify handles each WebSocket in
a child process of its own, and ``lookup`` runs in that child: there it also starts a thread that
tells the broker every ``vnc_touch_interval_s`` that the viewer is still connected (the idle
clock of ``broker.cull``); the thread ends with the child, that is with the connection. A second
thread records the connection (the owner sees who is connected) and, for a guest, ends the child
(and so the connection) within ``viewer_check_interval_s`` of the share's revocation.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner
from websockify.token_plugins import BasePlugin

import broker
from asci import accounts
from asci.config import Settings, load_settings
from sqlalchemy.orm import configure_mappers

from asci.db import import_all_models, session_scope
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


def make_token(settings: Settings, user_id: int, session_id: int, share_id: int = 0) -> str:
    """A token for ``user_id`` to open session ``session_id`` (the owner), or to open it through the share
    ``share_id`` (a guest); valid ``vnc_token_ttl_s`` seconds."""
    return _signer(settings).sign(f"{int(user_id)}.{int(session_id)}.{int(share_id)}".encode()).decode()


def read_token(settings: Settings, token: str) -> TokenClaim | None:
    """What a valid, unexpired token claims; None otherwise."""
    if not token or len(token) > 200:
        return None
    try:
        payload = _signer(settings).unsign(token.encode(), max_age=settings.vnc_token_ttl_s).decode()
        user_part, session_part, share_part = payload.split(".")
        return TokenClaim(int(user_part), int(session_part), int(share_part))
    except (BadSignature, SignatureExpired, ValueError, UnicodeDecodeError):
        return None


def _socket_of(db, claim: TokenClaim, user: accounts.User, settings: Settings) -> str | None:
    """The socket path the claim opens: the owner's own running session, or a guest's live share."""
    if claim.share_id:
        try:
            target = broker.shares.guest_target(db, claim.share_id, user)
        except broker.NotFound:
            return None
        return target.socket if target.session_id == claim.session_id else None
    try:
        desktop = broker.get_session(db, claim.session_id, user)
    except broker.NotFound:
        return None
    if desktop.user_id != user.id:  # only the owner's viewer, never an administrator's
        return None
    try:
        return broker.vnc_target(settings, claim.session_id, user).socket
    except broker.BrokerError:  # not running
        return None


def resolve(settings: Settings, token: str) -> tuple[str, str] | None:
    """``("unix_socket", path)`` of the VNC server the token opens, or None when it opens nothing."""
    claim = read_token(settings, token)
    if claim is None:
        return None
    with session_scope(settings) as db:
        user = db.get(accounts.User, claim.user_id)
        if user is None or not user.is_active:
            return None
        socket_path = _socket_of(db, claim, user, settings)
    if socket_path is None:
        return None
    path = broker.checked_socket(socket_path)
    if path is None:
        log.warning("session %s: socket %s is not a locked session socket; refused", claim.session_id, socket_path)
        return None
    try:
        broker.touch(settings, claim.session_id)
    except broker.BrokerError as exc:
        log.warning("touch of session %s failed: %s", claim.session_id, exc)
    return "unix_socket", path


def keep_touching(settings: Settings, session_id: int, interval: float) -> None:
    """Touch the session every ``interval`` seconds until it is no longer running (runs in a thread)."""
    while True:
        time.sleep(interval)
        try:
            if not broker.touch(settings, session_id):
                return
        except Exception as exc:  # noqa: BLE001 - a database hiccup must not end the viewer's connection
            log.warning("touch of session %s failed: %s", session_id, exc)


def watch_connection(settings: Settings, claim: TokenClaim, end_connection=None) -> None:
    """Record this viewer's connection (who is connected, for the owner) and, for a guest, end it once
    the share is revoked, its session ends or its mode changes (the viewer then reconnects with the new
    mode's password): checked every ``viewer_check_interval_s`` (runs in a
    thread of the connection's own websockify process; ``end_connection`` ends that process)."""
    import atexit

    with session_scope(settings) as db:
        connection_id = broker.shares.connection_opened(db, claim.session_id, claim.user_id, claim.share_id or None)
        mode = broker.shares.live_mode(db, claim.share_id, claim.user_id) if claim.share_id else None

    def closed() -> None:
        try:
            with session_scope(settings) as db:
                broker.shares.connection_closed(db, connection_id)
        except Exception:  # noqa: BLE001 - the process is ending either way
            log.exception("could not record the end of viewer connection %s", connection_id)

    atexit.register(closed)
    end_connection = end_connection or (lambda: os._exit(0))  # the socket closes with the process
    last_seen = time.monotonic()
    while True:
        time.sleep(settings.viewer_check_interval_s)
        try:
            with session_scope(settings) as db:
                live = not claim.share_id or (
                    mode is not None and broker.shares.live_mode(db, claim.share_id, claim.user_id) == mode)
                if live and time.monotonic() - last_seen >= SEEN_EVERY_S:  # a write every 10 s, a read every 2
                    broker.shares.connection_seen(db, connection_id)
                    last_seen = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - a database hiccup must not end the viewer's connection
            log.warning("viewer connection %s: check failed: %s", connection_id, exc)
            continue
        if not live:
            log.warning("share %s of session %s was revoked, ended or changed mode: disconnecting its guest",
                        claim.share_id, claim.session_id)
            closed()
            end_connection()
            return


class SessionTokens(BasePlugin):
    """websockify token plugin: ``source`` is the data directory (other settings from ASCI_* variables)."""

    def __init__(self, src):
        super().__init__(src)
        settings = load_settings()
        if src:
            settings = settings.replace(data_dir=Path(src))
        self.settings = settings
        from asci.logs import adopt_handlers

        adopt_handlers("websockify", settings.log_format)  # websockify's own stderr handler, in our format
        # websockify forks a process per connection from this one: map the models here, once, rather
        # than in every connection's process (~150 ms each, on the way from click to desktop)
        import_all_models()
        configure_mappers()

    def lookup(self, token):
        try:
            target = resolve(self.settings, token)
        except Exception:  # never let a lookup error open anything
            log.exception("VNC token lookup failed")
            return None
        if target is None:
            log.warning("refused VNC token (pid %s)", os.getpid())
            return None
        if multiprocessing.parent_process() is not None:  # websockify's child process for this connection
            claim = read_token(self.settings, token)
            threading.Thread(target=keep_touching, args=(self.settings, claim.session_id,
                                                         self.settings.vnc_touch_interval_s),
                             name=f"touch-{claim.session_id}", daemon=True).start()
            threading.Thread(target=watch_connection, args=(self.settings, claim),
                             name=f"watch-{claim.session_id}", daemon=True).start()
        return target
