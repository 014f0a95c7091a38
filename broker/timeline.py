"""An experiment's timeline: which environment versions its members launched, when, for how long and
by whom, read from the session records (ended sessions included: the record is the history).

Per environment, each version used is a band from its first session's start to its last session's end;
each session is a mark. ``version_on(day)`` answers "what did we use on that day" (the version most
used that day, else the last one used before it), what a relaunch of an old day starts.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from asci.accounts import User
from asci.db import utcnow
from broker.errors import NotFound
from broker.models import DesktopSession, Experiment, ExperimentMember


@dataclass(frozen=True)
class Mark:
    """One session on the timeline."""

    id: int
    user: str
    version: str
    started: dt.datetime
    ended: dt.datetime | None  # None: still running
    state: str

    def duration_s(self, now: dt.datetime) -> int:
        return int(((self.ended or now) - self.started).total_seconds())


@dataclass
class Band:
    """A version's span of use in the experiment."""

    version: str
    first: dt.datetime
    last: dt.datetime
    sessions: int = 0
    users: set[str] = field(default_factory=set)


@dataclass
class EnvironmentTimeline:
    environment: str
    bands: list[Band] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)

    def version_on(self, day: dt.date) -> str | None:
        """The version used most on ``day`` (UTC), else the last one used before it; None before any use."""
        that_day = Counter(m.version for m in self.marks if m.started.date() == day)
        if that_day:
            return max(that_day.items(), key=lambda item: (item[1], item[0]))[0]
        before = [m for m in self.marks if m.started.date() < day]
        return max(before, key=lambda m: m.started).version if before else None


@dataclass
class Timeline:
    experiment: str
    title: str
    starts_on: dt.date | None
    ends_on: dt.date | None
    environments: list[EnvironmentTimeline]
    now: dt.datetime

    @property
    def span(self) -> tuple[dt.datetime, dt.datetime]:
        """The time the picture covers: the experiment's dates and every session."""
        times = [m.started for e in self.environments for m in e.marks]
        times += [m.ended or self.now for e in self.environments for m in e.marks]
        if self.starts_on:
            times.append(dt.datetime.combine(self.starts_on, dt.time.min, tzinfo=dt.timezone.utc))
        if self.ends_on:
            times.append(dt.datetime.combine(self.ends_on, dt.time.max, tzinfo=dt.timezone.utc))
        if not times:
            return self.now - dt.timedelta(days=1), self.now
        low, high = min(times), max(times)
        return (low, high) if high > low else (low, low + dt.timedelta(hours=1))

    def as_dict(self) -> dict:
        """The JSON of ``GET /api/experiments/<code>/timeline``."""
        def iso(value):
            return value.isoformat() if value else None

        return {"experiment": self.experiment, "title": self.title, "starts_on": iso(self.starts_on),
                "ends_on": iso(self.ends_on), "environments": [
                    {"environment": e.environment,
                     "versions": [{"version": b.version, "first_used": iso(b.first), "last_used": iso(b.last),
                                   "sessions": b.sessions, "users": sorted(b.users)} for b in e.bands],
                     "sessions": [{"id": m.id, "user": m.user, "version": m.version, "started_at": iso(m.started),
                                   "ended_at": iso(m.ended), "duration_s": m.duration_s(self.now),
                                   "state": m.state} for m in e.marks]}
                    for e in self.environments]}


def experiment_timeline(db: Session, user: User, code: str) -> Timeline:
    """The timeline of experiment ``code`` for a member (or an administrator); NotFound for anyone else."""
    experiment = db.scalar(select(Experiment).where(Experiment.code == code))
    member = experiment is not None and db.scalar(select(ExperimentMember.id).where(
        ExperimentMember.experiment_id == experiment.id, ExperimentMember.user_id == user.id)) is not None
    if experiment is None or not (member or user.is_admin):
        raise NotFound(f"no experiment {code[:64]!r}")
    rows = db.execute(select(DesktopSession.id, User.username, DesktopSession.environment, DesktopSession.version,
                             DesktopSession.started_at, DesktopSession.created_at, DesktopSession.stopped_at,
                             DesktopSession.state)
                      .join(User, User.id == DesktopSession.user_id)
                      .where(DesktopSession.experiment_id == experiment.id, DesktopSession.version != "")
                      .order_by(DesktopSession.id)).all()
    now = utcnow()
    environments: dict[str, EnvironmentTimeline] = {}
    for row in rows:
        started = row.started_at or row.created_at
        mark = Mark(row.id, row.username, row.version, started, row.stopped_at, row.state)
        timeline = environments.setdefault(row.environment, EnvironmentTimeline(row.environment))
        timeline.marks.append(mark)
    for timeline in environments.values():
        bands: dict[str, Band] = {}
        for mark in timeline.marks:
            band = bands.setdefault(mark.version, Band(mark.version, mark.started, mark.ended or now))
            band.first, band.last = min(band.first, mark.started), max(band.last, mark.ended or now)
            band.sessions += 1
            band.users.add(mark.user)
        timeline.bands = sorted(bands.values(), key=lambda b: b.first)
    return Timeline(experiment.code, experiment.title, experiment.starts_on, experiment.ends_on,
                    [environments[name] for name in sorted(environments)], now)
