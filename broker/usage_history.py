"""History for the administration page's pictures: node usage samples (kept in the database, bounded and
pruned) and launch latency by hour (derived from the session rows).

* :func:`sample` records every node's guarantees and schedulable capacity (``broker.node_capacity``) when
  the newest sample is older than ``usage_sample_interval_s`` (reconciliation calls it each pass, so any
  number of reconcile loops record one sample per interval) and prunes samples older than
  ``usage_history_days``.
* :func:`node_history` returns the samples since a moment, per node, as columns for a chart.
* :func:`launch_hours` returns, per hour, the 50th/95th percentile of successful launches and the count of
  failed ones (``started_at - created_at``, as ``asci_session_start_seconds``).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from asci.config import Settings
from asci.db import utcnow
from broker.metrics import node_capacity
from broker.models import DesktopSession, NodeUsageSample, SessionState

MAX_HOURS = 24 * 31  # the launch chart's window is bounded


def sample(settings: Settings, db: Session, now: dt.datetime | None = None) -> int:
    """Record one sample per node unless one is recent; prune old ones. Returns the samples written."""
    now = now or utcnow()
    newest = db.scalar(select(func.max(NodeUsageSample.at)))
    if newest is not None and newest.tzinfo is None:
        newest = newest.replace(tzinfo=dt.timezone.utc)
    written = 0
    if newest is None or now - newest >= dt.timedelta(seconds=settings.usage_sample_interval_s):
        for row in node_capacity(db):
            db.add(NodeUsageSample(at=now, node=row["node"], sessions=row["sessions"],
                                   guaranteed_cpus=row["guaranteed_cpus"], schedulable_cpus=row["schedulable_cpus"],
                                   guaranteed_memory_bytes=row["guaranteed_memory_bytes"],
                                   schedulable_memory_bytes=row["schedulable_memory_bytes"]))
            written += 1
    db.execute(delete(NodeUsageSample).where(NodeUsageSample.at < now - dt.timedelta(days=settings.usage_history_days)))
    db.commit()
    return written


def node_history(db: Session, since: dt.datetime) -> dict[str, dict[str, list]]:
    """``{node: {"t": [epoch seconds], "guaranteed_cpus": [...], "schedulable_cpus": [...], ...}}`` since ``since``."""
    keys = ("sessions", "guaranteed_cpus", "schedulable_cpus", "guaranteed_memory_bytes", "schedulable_memory_bytes")
    nodes: dict[str, dict[str, list]] = {}
    for row in db.scalars(select(NodeUsageSample).where(NodeUsageSample.at >= since)
                          .order_by(NodeUsageSample.at, NodeUsageSample.node)):
        series = nodes.setdefault(row.node, {"t": [], **{key: [] for key in keys}})
        series["t"].append(round(row.at.timestamp(), 3))
        for key in keys:
            series[key].append(getattr(row, key))
    return nodes


def _percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


def launch_hours(db: Session, hours: int = 48, now: dt.datetime | None = None) -> list[dict]:
    """Per hour of the last ``hours`` (oldest first): ``{"t", "launches", "failures", "p50", "p95"}``."""
    hours = max(1, min(int(hours), MAX_HOURS))
    now = now or utcnow()
    first = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=hours - 1)
    buckets = {first + dt.timedelta(hours=n): {"seconds": [], "failures": 0} for n in range(hours)}
    rows = db.execute(select(DesktopSession.created_at, DesktopSession.started_at, DesktopSession.stopped_at,
                             DesktopSession.state)
                      .where(DesktopSession.created_at >= first,
                             or_(DesktopSession.started_at.isnot(None), DesktopSession.state == SessionState.FAILED)))
    for created, started, stopped, state in rows:
        hour = buckets.get(created.replace(minute=0, second=0, microsecond=0))
        if hour is None:
            continue
        if started is not None:
            hour["seconds"].append((started - created).total_seconds())
        elif stopped is not None:
            hour["failures"] += 1
    result = []
    for start, hour in buckets.items():
        seconds = hour["seconds"]
        result.append({"t": start.timestamp(), "launches": len(seconds) + hour["failures"], "failures": hour["failures"],
                       "p50": round(_percentile(seconds, 0.5), 3) if seconds else None,
                       "p95": round(_percentile(seconds, 0.95), 3) if seconds else None})
    return result
