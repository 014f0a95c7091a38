"""Launching from a page: the broker's launch runs in the background and the page follows it.

``broker.launch`` returns only once the desktop answers, so it runs in a thread and reports the
new session's id through ``on_created``; the caller sends the browser to that session's progress
page at once. Errors raised before the session exists (unknown environment, not a member,
quota...) reach the caller with their message.
"""

from __future__ import annotations

import logging
import threading
import time

import broker
from asci.accounts import User
from asci.config import Settings
from asci.db import session_scope
from web.errors import WebError

log = logging.getLogger(__name__)


def launch(settings: Settings, user_id: int, environment: str, version: str, experiment: str,
           wait_s: float = 10.0) -> int:
    """Start a session in the background; returns its id as soon as the broker has created it."""
    outcome: dict = {}
    created, done = threading.Event(), threading.Event()

    def on_created(session_id: int) -> None:
        outcome["id"] = session_id
        created.set()

    def run() -> None:
        try:
            with session_scope(settings) as db:
                user = db.get(User, user_id)
                broker.launch(settings, db, user, environment, version, experiment, on_created=on_created)
        except BaseException as exc:  # reported to the request while it waits, else logged
            outcome["error"] = exc
            log.warning("launch of %s %s for user %s failed: %s", environment, version, user_id, exc)
        finally:
            done.set()

    threading.Thread(target=run, name=f"launch-{user_id}", daemon=True).start()
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if created.wait(0.05):
            return int(outcome["id"])
        if done.is_set():  # refused before it existed: unknown environment, not a member, quota...
            raise outcome["error"]
    raise WebError("the broker did not register the session in time; see My sessions")
