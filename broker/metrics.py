"""The broker's Prometheus series, all read from the database at scrape time.

* ``asci_sessions{state}``, ``asci_nodes``, ``asci_nodes_up``;
* ``asci_node_guaranteed_cpus`` / ``_schedulable_cpus`` / ``_guaranteed_memory_bytes`` /
  ``_schedulable_memory_bytes`` ``{node}``: what placement has handed out against what it may hand out;
* ``asci_session_start_seconds{outcome}``: a histogram of every launch on record, from its row:
  ``success`` (``started_at - created_at``: request to the VNC server answering) or ``failure``
  (``stopped_at - created_at`` of a session that failed before it ran). Launches happen in every web
  process and in the worker's smoke gate: deriving the histogram from the rows they all write keeps it
  right whichever process is scraped, and across restarts. Its counts only grow while rows are kept;
* ``asci_active_users{period}``: users with a desktop active in the last day / 30 days.
"""

from __future__ import annotations

import datetime as dt

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from asci.db import utcnow
from asci.metrics import START_BUCKETS, histogram, histogram_row, seconds_between
from broker.models import ACTIVE_STATES, DesktopSession, Node, NodeState, SessionState
from broker.placement import schedulable

PERIODS = {"day": dt.timedelta(days=1), "month": dt.timedelta(days=30)}
OUTCOMES = ("success", "failure")


def node_capacity(db: Session) -> list[dict]:
    """Per node: its name, state and guaranteed / schedulable CPUs and memory (also the history's sample)."""
    used = {node_id: (float(cpus), int(memory), int(count)) for node_id, cpus, memory, count in db.execute(
        select(DesktopSession.node_id, func.coalesce(func.sum(DesktopSession.cpu_guarantee), 0.0),
               func.coalesce(func.sum(DesktopSession.memory_guarantee_bytes), 0), func.count())
        .where(DesktopSession.node_id.isnot(None), DesktopSession.state.in_(ACTIVE_STATES))
        .group_by(DesktopSession.node_id))}
    rows = []
    for node in db.scalars(select(Node).order_by(Node.name)):
        cpus, memory = schedulable(node)
        guaranteed_cpus, guaranteed_memory, count = used.get(node.id, (0.0, 0, 0))
        rows.append({"node": node.name, "up": node.state == NodeState.UP, "sessions": count,
                     "guaranteed_cpus": guaranteed_cpus,
                     "schedulable_cpus": cpus, "guaranteed_memory_bytes": guaranteed_memory,
                     "schedulable_memory_bytes": memory})
    return rows


def _start_histogram(db: Session):
    started = DesktopSession.started_at.isnot(None)
    ended = case((started, DesktopSession.started_at), else_=DesktopSession.stopped_at)
    duration = seconds_between(db, ended, DesktopSession.created_at)
    outcome = case((started, "success"), else_="failure")
    where = [or_(started, and_(DesktopSession.state == SessionState.FAILED, DesktopSession.stopped_at.isnot(None)))]
    rows = histogram_row(db, duration, outcome, where, START_BUCKETS)
    return histogram("asci_session_start_seconds", "Seconds from a launch request to the desktop answering "
                     "(success) or to its failure", "outcome", rows, START_BUCKETS, OUTCOMES)


def _active_users(db: Session) -> GaugeMetricFamily:
    family = GaugeMetricFamily("asci_active_users", "Users with a desktop active within the period",
                               labels=["period"])
    now = utcnow()
    for period, span in PERIODS.items():
        since = now - span
        count = db.scalar(select(func.count(func.distinct(DesktopSession.user_id))).where(or_(
            DesktopSession.state.in_(ACTIVE_STATES), DesktopSession.created_at >= since,
            DesktopSession.stopped_at >= since, DesktopSession.last_activity >= since)))
        family.add_metric([period], count or 0)
    return family


class BrokerCollector:
    """The broker's series, from the database session ``db``."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def collect(self):
        db = self.db
        sessions = GaugeMetricFamily("asci_sessions", "Sessions by state", labels=["state"])
        counts = dict(db.execute(select(DesktopSession.state, func.count()).group_by(DesktopSession.state)).all())
        for state in SessionState:
            sessions.add_metric([state], counts.get(state, 0))
        capacity = node_capacity(db)
        total = GaugeMetricFamily("asci_nodes", "Registered nodes")
        total.add_metric([], len(capacity))
        up = GaugeMetricFamily("asci_nodes_up", "Nodes whose engine answers (state up)")
        up.add_metric([], sum(1 for row in capacity if row["up"]))
        node_up = GaugeMetricFamily("asci_node_up", "Whether each node's engine answers (1) or not (0)",
                                    labels=["node"])
        families = {key: GaugeMetricFamily(f"asci_node_{key}", doc, labels=["node"]) for key, doc in (
            ("guaranteed_cpus", "CPUs guaranteed to the node's active sessions"),
            ("schedulable_cpus", "CPUs placement may guarantee on the node (after reserve and overcommit)"),
            ("guaranteed_memory_bytes", "Memory guaranteed to the node's active sessions"),
            ("schedulable_memory_bytes", "Memory placement may guarantee on the node (after reserve and overcommit)"))}
        for row in capacity:
            node_up.add_metric([row["node"]], 1 if row["up"] else 0)
            for key, family in families.items():
                family.add_metric([row["node"]], row[key])
        yield from (sessions, total, up, node_up, *families.values(), _start_histogram(db), _active_users(db))
