"""Launching from a page: the session is reserved in the request, the broker's runner does the rest.

The request commits the session's row (``Broker.launch_in_background``: the reserve step, whose
refusals, unknown environment, not a member, quota..., reach the caller with their message) and
sends the browser to that session's progress page at once; placement, start and the wait for the
desktop go on in the broker's launch runner, and the page follows the session's state.
"""

from __future__ import annotations

import broker
from asci.accounts import User
from asci.config import Settings
from asci.db import session_scope


def launch(settings: Settings, desktops: broker.Broker, user_id: int, request: broker.LaunchRequest) -> int:
    """Reserve a session for ``user_id`` and start it in the background; returns its id."""
    with session_scope(settings) as db:
        return desktops.launch_in_background(db, db.get(User, user_id), request)
