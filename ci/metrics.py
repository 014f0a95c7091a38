"""ci's Prometheus series, read from the build queue at scrape time.

* ``asci_build_queue_length``: jobs waiting (queued, due or debounced); ``asci_builds_running``;
* ``asci_build_seconds{outcome}``: a histogram of every finished job's last attempt, ``finished_at -
  started_at``, by outcome (succeeded / failed / cancelled). Builds run in the worker (any number of
  them, on any machine), the web serves ``/metrics``: the histogram is derived from the rows the workers
  write, so it is the same whichever web process is scraped and survives restarts.
"""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from asci.metrics import BUILD_BUCKETS, histogram, histogram_row, seconds_between
from ci.models import FINISHED, BuildJob, JobState


class CiCollector:
    """The build queue's series, from the database session ``db``."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def collect(self):
        db = self.db
        counts = dict(db.execute(select(BuildJob.state, func.count()).group_by(BuildJob.state)).all())
        queued = GaugeMetricFamily("asci_build_queue_length", "Build jobs waiting to run")
        queued.add_metric([], counts.get(JobState.QUEUED, 0))
        running = GaugeMetricFamily("asci_builds_running", "Build jobs running now")
        running.add_metric([], counts.get(JobState.RUNNING, 0))
        duration = seconds_between(db, BuildJob.finished_at, BuildJob.started_at)
        rows = histogram_row(db, duration, BuildJob.state,
                             [BuildJob.state.in_(FINISHED), BuildJob.started_at.isnot(None),
                              BuildJob.finished_at.isnot(None)], BUILD_BUCKETS)
        yield from (queued, running, histogram("asci_build_seconds", "Seconds a build job's last attempt took, "
                                               "by outcome", "outcome", rows, BUILD_BUCKETS,
                                               [str(state) for state in FINISHED]))


def build_timeline(db: Session, since, limit: int = 500) -> list[dict]:
    """Builds that ran since ``since`` (oldest first, at most ``limit``): the admin page's timeline bars."""
    from asci.db import utcnow

    now = utcnow()
    jobs = db.scalars(select(BuildJob).where(BuildJob.started_at.isnot(None), BuildJob.started_at >= since)
                      .order_by(BuildJob.started_at.desc()).limit(max(1, min(limit, 5000)))).all()
    return [{"id": job.id, "environment": job.environment, "state": job.state, "version": job.version,
             "start": job.started_at.timestamp(),
             "end": (job.finished_at or now).timestamp()}
            for job in reversed(jobs)]
