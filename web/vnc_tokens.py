"""Short-lived signed tokens that open one session's VNC WebSocket, and websockify's plugin for them.

A token is ``itsdangerous.TimestampSigner`` over ``"<user id>.<session id>"`` with the
application's secret key. websockify (started with ``--token-plugin
web.vnc_tokens.SessionTokens --token-source <data_dir>``) calls ``lookup(token)``
for every new connection: a missing, forged or expired token, or one whose user
does not own the session (or the session is not running), resolves to nothing and
the connection is refused. The VNC password is never part of the token.

What a token opens is ``("unix_socket", path)``: the session's VNC socket, and only once the
broker has locked it (``broker.checked_socket``: a root-owned socket in a root-only folder, never
a symlink), so nothing a desktop does can redirect a viewer. websockify handles each WebSocket in
a child process of its own, and ``lookup`` runs in that child: there it also starts a thread that
tells the broker every ``vnc_touch_interval_s`` that the viewer is still connected (the idle
clock of ``broker.cull``); the thread ends with the child, that is with the connection.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
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


def _signer(settings: Settings) -> TimestampSigner:
    return TimestampSigner(secret_key(settings), salt=SALT)


def make_token(settings: Settings, user_id: int, session_id: int) -> str:
    """A token for ``user_id`` to open session ``session_id`` (valid ``vnc_token_ttl_s`` seconds)."""
    return _signer(settings).sign(f"{int(user_id)}.{int(session_id)}".encode()).decode()


def read_token(settings: Settings, token: str) -> tuple[int, int] | None:
    """``(user id, session id)`` of a valid, unexpired token; None otherwise."""
    if not token or len(token) > 200:
        return None
    try:
        payload = _signer(settings).unsign(token.encode(), max_age=settings.vnc_token_ttl_s).decode()
        user_part, session_part = payload.split(".")
        return int(user_part), int(session_part)
    except (BadSignature, SignatureExpired, ValueError, UnicodeDecodeError):
        return None


def resolve(settings: Settings, token: str) -> tuple[str, str] | None:
    """``("unix_socket", path)`` of the VNC server the token opens, or None when it opens nothing."""
    parsed = read_token(settings, token)
    if parsed is None:
        return None
    user_id, session_id = parsed
    with session_scope(settings) as db:
        user = db.get(accounts.User, user_id)
        if user is None or not user.is_active:
            return None
        try:
            desktop = broker.get_session(db, session_id, user)
        except broker.NotFound:
            return None
        if desktop.user_id != user.id:  # only the owner's viewer, never an administrator's
            return None
        try:
            target = broker.vnc_target(settings, session_id, user)
        except broker.BrokerError:  # not running
            return None
    path = broker.checked_socket(target.socket)
    if path is None:
        log.warning("session %s: socket %s is not a locked session socket; refused", session_id, target.socket)
        return None
    try:
        broker.touch(settings, session_id)
    except broker.BrokerError as exc:
        log.warning("touch of session %s failed: %s", session_id, exc)
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


class SessionTokens(BasePlugin):
    """websockify token plugin: ``source`` is the data directory (other settings from ASCI_* variables)."""

    def __init__(self, src):
        super().__init__(src)
        settings = load_settings()
        if src:
            settings = settings.replace(data_dir=Path(src))
        self.settings = settings
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
            session_id = read_token(self.settings, token)[1]
            threading.Thread(target=keep_touching, args=(self.settings, session_id,
                                                         self.settings.vnc_touch_interval_s),
                             name=f"touch-{session_id}", daemon=True).start()
        return target
