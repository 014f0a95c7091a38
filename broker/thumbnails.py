"""Small live pictures of running desktops: one framebuffer grab from the desktop's VNC server, shrunk to
a thumbnail PNG (:meth:`asci.rfb.Framebuffer.scaled`).

Only the session's owner and administrators get one (the same rule as the viewer, through
:func:`broker.vnc_target`); the grab uses the view-only password, opens only a locked session socket
(:func:`broker.rundir.checked_socket`) and never counts as activity (a watched desktop still idles out).
Each process grabs a desktop at most every ``thumbnail_max_age_s`` seconds, however many pages ask.
"""

from __future__ import annotations

import threading
import time

from asci import rfb
from asci.accounts import User
from asci.config import Settings
from broker.errors import BackendError, NotFound
from broker.rundir import checked_socket
from broker.service import vnc_target

THUMBNAIL_WIDTH = 320
GRAB_TIMEOUT_S = 5.0
_cache: dict[int, tuple[float, bytes]] = {}
_lock = threading.Lock()


def thumbnail(settings: Settings, session_id: int, user: User, width: int = THUMBNAIL_WIDTH) -> bytes:
    """A PNG of the running desktop ``session_id``, at most ``width`` pixels wide; NotFound for anyone else's."""
    target = vnc_target(settings, session_id, user)  # NotFound unless running and the user's (or an admin's)
    now = time.monotonic()
    with _lock:
        cached = _cache.get(session_id)
        if cached is not None and now - cached[0] < settings.thumbnail_max_age_s:
            return cached[1]
        for key, (at, _png) in list(_cache.items()):  # forget desktops nobody looked at for a while
            if now - at > 60:
                del _cache[key]
    path = checked_socket(target.socket)
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
