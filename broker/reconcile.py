"""Reconciliation: make the database agree with what runs on the nodes.

For every node: ping it (no answer → node down, its sessions lost); list the
containers carrying this broker's labels (``asci.managed=1``,
``asci.broker=<instance>``); re-adopt running containers of active sessions
(record container id, mark running — this is what a broker restart relies
on); mark sessions whose container vanished or exited ``lost``; remove
containers whose session has ended or is unknown. Sessions still inside
their start time-out are left to the launch in progress.
"""

from __future__ import annotations

import datetime as dt
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from asci import db as asci_db
from broker import logs, ports
from broker.backends.base import NodeRef
from broker.errors import BackendError, NodeUnreachable
from broker.models import ACTIVE_STATES, FAILED, LOST, NODE_UP, PENDING, RUNNING, STARTING, DesktopSession, Node


def reconcile(broker, db: Session) -> dict:
    """One pass over every node; returns counts of what changed."""
    summary = {"adopted": 0, "lost": 0, "removed": 0, "nodes_down": 0, "nodes_up": 0}
    now = asci_db.utcnow()
    grace = dt.timedelta(seconds=broker.settings.session_start_timeout_s)
    for node in db.scalars(select(Node).order_by(Node.id)).all():
        ref = NodeRef.of(node)
        try:
            broker.backend.ping(ref)
            found = {m.session_id: m for m in broker.backend.list_managed(ref, broker.settings.broker_instance)}
        except NodeUnreachable as exc:
            if node.state == NODE_UP:
                broker.node_down(db, node.id, str(exc))
                summary["nodes_down"] += 1
            continue
        node.state, node.last_seen, node.last_error = NODE_UP, now, ""
        summary["nodes_up"] += 1
        active = db.scalars(select(DesktopSession).where(DesktopSession.node_id == node.id,
                                                         DesktopSession.state.in_(ACTIVE_STATES))).all()
        for session in active:
            managed = found.pop(session.id, None)
            young = session.state in (PENDING, STARTING) and now - session.created_at < grace
            if managed is not None and managed.running:
                if session.state != RUNNING or session.container_id != managed.container_id:
                    session.state, session.container_id = RUNNING, managed.container_id
                    session.container_name = managed.name
                    session.backend_state = {"container_id": managed.container_id, "container_name": managed.name}
                    session.started_at = session.started_at or now
                    session.last_activity = session.last_activity or now
                    summary["adopted"] += 1
                    logs.event("session.adopted", session=session.id, node=node.name)
            elif young:
                continue
            else:
                why = "its desktop exited" if managed is not None else "its container vanished"
                if managed is not None:
                    _remove(broker, ref, managed.container_id)
                session.state, session.message, session.stopped_at = LOST, f"session lost: {why}", now
                ports.release(db, session.id)
                summary["lost"] += 1
                logs.event("session.lost", session=session.id, node=node.name, reason=why)
        for managed in found.values():  # containers whose session ended or is unknown
            _remove(broker, ref, managed.container_id)
            summary["removed"] += 1
            logs.event("container.orphan_removed", node=node.name, container=managed.container_id,
                       session=managed.session_id)
        db.commit()
    stale = db.scalars(select(DesktopSession).where(DesktopSession.state == PENDING,
                                                    DesktopSession.created_at < now - grace)).all()
    for session in stale:
        session.state, session.message, session.stopped_at = FAILED, "the launch never got a node", now
        ports.release(db, session.id)
    db.commit()
    return summary


def _remove(broker, ref: NodeRef, container_id: str) -> None:
    try:
        broker.backend.stop(ref, {"container_id": container_id})
    except BackendError as exc:
        logs.event("container.remove_failed", container=container_id, error=str(exc))


def loop(broker, interval: float, passes: int | None = None, cull: bool = True) -> None:
    """Reconcile (and cull) every ``interval`` seconds, forever or ``passes`` times."""
    from broker.cull import cull as cull_pass

    done = 0
    while passes is None or done < passes:
        with asci_db.session_scope(broker.settings) as db:
            summary = reconcile(broker, db)
            if cull:
                summary.update(cull_pass(broker, db))
        logs.event("reconcile.pass", **summary)
        done += 1
        if passes is None or done < passes:
            time.sleep(interval)
