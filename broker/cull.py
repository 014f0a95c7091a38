"""Culling: idle sessions are warned, then stopped; sessions past their maximum lifetime are stopped.

A session is active while a VNC client is connected. Every viewer reaches a
desktop through websockify (its VNC socket is open to the platform alone), so
activity comes from there: ``Broker.touch(session_id)`` when the
token plugin opens a connection, and again every ``vnc_touch_interval_s``
while that connection lasts (``web.vnc_tokens``). After
``session_idle_timeout_s - session_idle_warning_s`` without activity the
session's message says when it will stop; at ``session_idle_timeout_s`` it
is stopped. The desktops of a disabled account are stopped once
``disabled_user_grace_s`` has passed since it was disabled (time to save work
is an administrator's choice, not the user's).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from asci.db import utcnow
from broker import logs
from broker.models import DesktopSession, SessionState


def cull(broker, db: Session, now: dt.datetime | None = None) -> dict:
    """One culling pass; returns counts of warned and stopped sessions."""
    settings = broker.settings
    now = now or utcnow()
    summary = {"warned": 0, "culled": 0, "expired": 0, "disabled": 0}
    grace = dt.timedelta(seconds=settings.disabled_user_grace_s)
    idle_limit = dt.timedelta(seconds=settings.session_idle_timeout_s)
    warn_at = idle_limit - dt.timedelta(seconds=settings.session_idle_warning_s)
    for desktop in db.scalars(select(DesktopSession).where(DesktopSession.state == SessionState.RUNNING)).all():
        owner = desktop.user
        if not owner.is_active and (owner.disabled_at is None or now - owner.disabled_at >= grace):
            broker.stop_session(db, desktop, "stopped: the account was disabled")
            summary["disabled"] += 1
            continue
        started = desktop.started_at or desktop.created_at
        if now - started >= dt.timedelta(seconds=settings.session_max_lifetime_s):
            broker.stop_session(db, desktop, "stopped: the session reached its maximum lifetime")
            summary["expired"] += 1
            continue
        idle = now - (desktop.last_activity or started)
        if idle >= idle_limit:
            broker.stop_session(db, desktop, f"stopped: no VNC client for {int(idle.total_seconds() // 60)} minutes")
            summary["culled"] += 1
        elif idle >= warn_at and desktop.warned_at is None:
            stop_time = (desktop.last_activity or started) + idle_limit
            desktop.warned_at = now
            desktop.message = f"idle: no VNC client connected; the session stops at {stop_time:%Y-%m-%d %H:%M} UTC"
            summary["warned"] += 1
            logs.event("session.idle_warning", session=desktop.id, stops_at=stop_time.isoformat())
    db.commit()
    return summary
