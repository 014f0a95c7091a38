"""The audit log: who did what to whom, for administrators (desktop shares and their revocation).

Rows are written in the caller's transaction, so an action and its audit record commit together or
not at all. The admin page ``/admin/audit`` shows the newest first.
"""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from asci.db import Base, UTCDateTime, utcnow


class AuditEvent(Base):
    """One recorded action: ``actor`` did ``action`` on ``subject`` (details as JSON)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[str] = mapped_column(Text, default="{}")

    @property
    def details(self) -> dict:
        """``detail`` decoded."""
        return json.loads(self.detail or "{}")


def record(db: Session, actor: str, action: str, subject: str = "", **detail) -> AuditEvent:
    """Add an event to ``db``'s transaction (the caller commits it with the action it records)."""
    event = AuditEvent(actor=actor, action=action, subject=subject, detail=json.dumps(detail, sort_keys=True,
                                                                                     default=str))
    db.add(event)
    return event


def recent(db: Session, limit: int = 200, action_prefix: str = "") -> list[AuditEvent]:
    """The newest events first (only actions starting with ``action_prefix`` when given)."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action_prefix:
        query = query.where(AuditEvent.action.startswith(action_prefix))
    return list(db.scalars(query))
