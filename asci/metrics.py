"""Helpers for the Prometheus series that are read from the database at scrape time.

A value several processes (or machines) contribute to, a gauge or a histogram of launches and builds,
is computed from the rows they all write, whichever web process Prometheus scrapes: no in-process
counter can disagree with another. This module holds what every package's collector shares:

* :func:`seconds_between`: the SQL expression of ``later - earlier`` in seconds (PostgreSQL and SQLite);
* :func:`histogram`: a cumulative histogram family from per-outcome bucket counts computed in SQL;
* :class:`CoreCollector`: the database's reachability and the age of each part's newest heartbeat.
"""

from __future__ import annotations

import time
from typing import Iterable, Sequence

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import case, extract, func, select
from sqlalchemy.orm import Session

from asci.db import utcnow

# launches (request → VNC answering) and builds take seconds to many minutes
START_BUCKETS = (0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120, 300)
BUILD_BUCKETS = (5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


def seconds_between(db: Session, later, earlier):
    """SQL: the seconds from column ``earlier`` to column ``later`` (fractional)."""
    if db.get_bind().dialect.name == "postgresql":
        return extract("epoch", later - earlier)
    # julianday's float carries ~20 µs of error: rounded to the millisecond, 10 s is 10 s, not 10.00002
    return func.round((func.julianday(later) - func.julianday(earlier)) * 86400.0, 3)


def histogram_row(db: Session, duration, outcome, where, buckets: Sequence[float]):
    """Rows ``(outcome, count, sum, count <= b0, count <= b1, ...)`` of the rows matching ``where``."""
    columns = [func.sum(case((duration <= bound, 1), else_=0)) for bound in buckets]
    query = select(outcome, func.count(), func.coalesce(func.sum(duration), 0.0), *columns).where(*where)
    return db.execute(query.group_by(outcome)).all()


def histogram(name: str, documentation: str, label: str, rows, buckets: Sequence[float],
              outcomes: Iterable[str]) -> HistogramMetricFamily:
    """A histogram family with one series per outcome (zeros for an outcome without rows)."""
    family = HistogramMetricFamily(name, documentation, labels=[label])
    seen = {row[0]: row for row in rows}
    for outcome in outcomes:
        row = seen.get(outcome)
        count, total = (int(row[1]), float(row[2] or 0.0)) if row else (0, 0.0)
        cumulative = [int(value or 0) for value in row[3:]] if row else [0] * len(buckets)
        family.add_metric([outcome], [*((str(float(b)), c) for b, c in zip(buckets, cumulative)),
                                      ("+Inf", count)], total)
    return family


class CoreCollector:
    """``asci_database_up``, ``asci_database_ping_seconds`` and ``asci_part_heartbeat_age_seconds{part}``."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def collect(self):
        from asci.heartbeats import Heartbeat

        began = time.monotonic()
        newest = self.db.execute(select(Heartbeat.part, func.max(Heartbeat.beat_at)).group_by(Heartbeat.part)).all()
        up = GaugeMetricFamily("asci_database_up", "Whether the platform's database answers (1) or not (0)")
        up.add_metric([], 1)
        ping = GaugeMetricFamily("asci_database_ping_seconds", "Seconds the heartbeat query took")
        ping.add_metric([], time.monotonic() - began)
        age = GaugeMetricFamily("asci_part_heartbeat_age_seconds",
                                "Seconds since the newest heartbeat of any instance of each part", labels=["part"])
        now = utcnow()
        for part, beat_at in newest:
            if beat_at.tzinfo is None:  # SQLite drops the zone of an aggregate (max) result
                beat_at = beat_at.replace(tzinfo=now.tzinfo)
            age.add_metric([part], max(0.0, (now - beat_at).total_seconds()))
        yield from (up, ping, age)
