"""Heartbeats of the platform's long-running parts (web, websockify, worker, reconcile, cull).

Each running part records, under its name and instance (``host:pid``), when it started, when it
last beat and what it last said. The supervisor of ``asci serve`` records crashes and restarts;
administrators read the table on the admin page and through the health API, so a part that
stopped beating is visible whichever machine runs it.

An instance has *ended* when it was recorded ``crashed`` or ``stopped``, or when it has been
silent for :data:`GONE_AFTER` (a process that died without a word: a worker of a set-up run, a
killed ``asci serve``). Each part shows its live instances and, once, its newest ended one; every
beat of a part deletes that part's older ended rows, and any row silent for :data:`FORGET_AFTER`.
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
GONE_AFTER = dt.timedelta(minutes=15)  # ... and after this long as ended (parts beat every few seconds to minutes)
FORGET_AFTER = dt.timedelta(days=1)  # any row without a beat for this long is deleted
ENDED_STATES = ("crashed", "stopped")  # what the supervisor records when an instance ends


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
                db.flush()
                prune(db, part, now)
            return
        except IntegrityError:  # two beats of a new instance at once: the other one created the row
            continue


def _has_ended(row: Heartbeat, now: dt.datetime) -> bool:
    return row.state in ENDED_STATES or now - row.beat_at > GONE_AFTER


def _shown(rows: list[Heartbeat], now: dt.datetime) -> list[Heartbeat]:
    """Of one part's rows (newest beat first): every live instance and the newest ended one."""
    ended = [row for row in rows if _has_ended(row, now)]
    return [row for row in rows if not _has_ended(row, now) or row is ended[0]]


def prune(db: Session, part: str, now: dt.datetime | None = None) -> int:
    """Delete ``part``'s ended rows but the newest, and every row silent for :data:`FORGET_AFTER`; the count."""
    now = now or utcnow()
    rows = list(db.scalars(select(Heartbeat).where(Heartbeat.part == part).order_by(Heartbeat.beat_at.desc(),
                                                                                     Heartbeat.id.desc())))
    kept = {row.id for row in _shown(rows, now)}
    doomed = [row.id for row in rows if row.id not in kept]
    if doomed:
        db.execute(delete(Heartbeat).where(Heartbeat.id.in_(doomed)))
    forgotten = db.execute(delete(Heartbeat).where(Heartbeat.beat_at < now - FORGET_AFTER)).rowcount
    return len(doomed) + (forgotten or 0)


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
    silent: bool  # recorded running, no beat for STALE_AFTER (not yet GONE_AFTER)
    ended: bool  # recorded crashed or stopped, or silent for GONE_AFTER

    @property
    def shown_state(self) -> str:
        """What the admin page says: ``running``/``error``, ``silent``, or ``ended`` (with ``state`` beside it)."""
        return "ended" if self.ended else "silent" if self.silent else self.state

    def as_dict(self) -> dict:
        return {"part": self.part, "instance": self.instance, "state": self.state, "detail": self.detail,
                "restarts": self.restarts, "started_at": self.started_at.isoformat(),
                "beat_at": self.beat_at.isoformat(), "silent": self.silent, "ended": self.ended}


def recent(db: Session, now: dt.datetime | None = None) -> list[PartStatus]:
    """By part: the heartbeat of every live instance and, once, of the part's newest ended instance."""
    now = now or utcnow()
    rows = list(db.scalars(select(Heartbeat).order_by(Heartbeat.part, Heartbeat.beat_at.desc(), Heartbeat.id.desc())))
    shown = []
    for part in dict.fromkeys(row.part for row in rows):
        shown += _shown([row for row in rows if row.part == part], now)
    return [PartStatus(row.part, row.instance, row.state, row.detail, row.restarts, row.started_at, row.beat_at,
                       silent=row.state == "running" and not _has_ended(row, now) and now - row.beat_at > STALE_AFTER,
                       ended=_has_ended(row, now)) for row in shown]
