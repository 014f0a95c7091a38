"""Prometheus metrics: sessions by state and nodes up (read from the database at scrape time),
and the launch latency histogram (request → VNC answering), observed by the service."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from asci.db import session_scope
from broker.models import DesktopSession, Node, NodeState, SessionState

REGISTRY = CollectorRegistry()
LAUNCH_SECONDS = Histogram("asci_session_launch_seconds", "Time from launch request to the VNC server answering",
                           buckets=(0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120), registry=REGISTRY)


class _DatabaseCollector:
    def __init__(self, settings) -> None:
        self.settings = settings

    def collect(self):
        sessions = GaugeMetricFamily("asci_sessions", "Sessions by state", labels=["state"])
        nodes = GaugeMetricFamily("asci_nodes_up", "Nodes that answer (state up)")
        total = GaugeMetricFamily("asci_nodes", "Registered nodes")
        with session_scope(self.settings) as db:
            counts = dict(db.execute(select(DesktopSession.state, func.count()).group_by(DesktopSession.state)).all())
            up = db.scalar(select(func.count()).select_from(Node).where(Node.state == NodeState.UP)) or 0
            registered = db.scalar(select(func.count()).select_from(Node)) or 0
        for state in SessionState:
            sessions.add_metric([state], counts.get(state, 0))
        nodes.add_metric([], up)
        total.add_metric([], registered)
        yield from (sessions, nodes, total)


def render(settings) -> bytes:
    """The text exposition of every broker metric."""
    registry = CollectorRegistry()
    registry.register(_DatabaseCollector(settings))
    return generate_latest(REGISTRY) + generate_latest(registry)
