"""Small live pictures of running desktops: one framebuffer grab from the desktop's VNC server, shrunk to
a thumbnail PNG (:meth:`asci.rfb.Framebuffer.scaled`).

Only the session's owner and administrators get one (the same rule as the viewer, through
:meth:`broker.Broker.vnc_target`); the grab uses the view-only password, opens only a locked session socket
(:func:`broker.rundir.checked_socket`) or the node agent's relay (``broker.open_viewer``) and never counts as activity (a watched desktop still idles out).
Each process grabs a desktop at most every ``thumbnail_max_age_s`` seconds, however many pages ask.
"""

from __future__ import annotations

import threading
import time

from asci import rfb
from asci.accounts import User
from asci.config import Settings
from broker.errors import BackendError, NotFound
from broker.node_paths import open_viewer
from broker.service import Broker

THUMBNAIL_WIDTH = 320
GRAB_TIMEOUT_S = 5.0
_cache: dict[int, tuple[float, bytes]] = {}
_lock = threading.Lock()


def thumbnail(settings: Settings, desktops: Broker, session_id: int, user: User, width: int = THUMBNAIL_WIDTH) -> bytes:
    """A PNG of the running desktop ``session_id``, at most ``width`` pixels wide; NotFound for anyone else's
    (``desktops``: the broker asked)."""
    target = desktops.vnc_target(session_id, user)  # NotFound unless running and the user's (or an admin's)
    now = time.monotonic()
    with _lock:
        cached = _cache.get(session_id)
        if cached is not None and now - cached[0] < settings.thumbnail_max_age_s:
            return cached[1]
        for key, (at, _png) in list(_cache.items()):  # forget desktops nobody looked at for a while
            if now - at > 60:
                del _cache[key]
    path = open_viewer(settings, target.socket)  # the locked socket here, or a bridge to the node's agent
    if path is None:
        raise NotFound(f"session {session_id} has no desktop to show yet")
    try:
        frame = rfb.capture(path, target.view_password or target.password, timeout=GRAB_TIMEOUT_S)
    except rfb.RFBError as exc:
        raise BackendError(f"session {session_id}: {exc}") from None
    png = frame.scaled(width).to_png()
    with _lock:
        _cache[session_id] = (time.monotonic(), png)
    return png
