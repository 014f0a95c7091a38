"""Heartbeats of the platform's long-running parts (web, websockify, worker, reconcile, cull).

Each running part records, under its name and instance (``host:pid``), when it started, when it
last beat and what it last said. The supervisor of ``asci serve`` records crashes and restarts;
administrators read the table on the admin page and through the health API, so a part that
stopped beating is visible whichever machine runs it.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from dataclasses import dataclass

from sqlalchemy import Integer, String, Text, UniqueConstraint, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from asci.config import Settings
from asci.db import Base, UTCDateTime, session_scope, utcnow

STALE_AFTER = dt.timedelta(minutes=2)  # a part that has not beaten for this long is shown as silent
FORGET_AFTER = dt.timedelta(days=1)


class Heartbeat(Base):
    """The last sign of life of one instance of a part."""

    __tablename__ = "heartbeats"
    __table_args__ = (UniqueConstraint("part", "instance", name="uq_heartbeats_part_instance"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    part: Mapped[str] = mapped_column(String(32))
    instance: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default="running")
    detail: Mapped[str] = mapped_column(Text, default="")
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    beat_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


def this_instance(pid: int | None = None) -> str:
    """``host:pid`` of this process (or of ``pid``)."""
    return f"{socket.gethostname()}:{pid or os.getpid()}"


def beat(settings: Settings, part: str, detail: str = "", *, instance: str | None = None, state: str = "running",
         restarts: int | None = None) -> None:
    """Record that ``part`` is alive (``state`` ``running``) or what happened to it."""
    instance = instance or this_instance()
    now = utcnow()
    for _attempt in range(3):
        try:
            with session_scope(settings) as db:
                row = db.scalar(select(Heartbeat).where(Heartbeat.part == part, Heartbeat.instance == instance))
                if row is None:
                    row = Heartbeat(part=part, instance=instance, started_at=now)
                    db.add(row)
                row.state, row.detail, row.beat_at = state, detail[:2000], now
                if restarts is not None:
                    row.restarts = restarts
                db.execute(delete(Heartbeat).where(Heartbeat.beat_at < now - FORGET_AFTER))
            return
        except IntegrityError:  # two beats of a new instance at once: the other one created the row
            continue


@dataclass(frozen=True)
class PartStatus:
    """What administrators see of a part."""

    part: str
    instance: str
    state: str
    detail: str
    restarts: int
    started_at: dt.datetime
    beat_at: dt.datetime
    silent: bool

    def as_dict(self) -> dict:
        return {"part": self.part, "instance": self.instance, "state": self.state, "detail": self.detail,
                "restarts": self.restarts, "started_at": self.started_at.isoformat(),
                "beat_at": self.beat_at.isoformat(), "silent": self.silent}


def recent(db: Session, now: dt.datetime | None = None) -> list[PartStatus]:
    """The newest heartbeat of every part and instance, by part."""
    now = now or utcnow()
    rows = db.scalars(select(Heartbeat).order_by(Heartbeat.part, Heartbeat.beat_at.desc()))
    return [PartStatus(row.part, row.instance, row.state, row.detail, row.restarts, row.started_at, row.beat_at,
                       row.state == "running" and now - row.beat_at > STALE_AFTER) for row in rows]
