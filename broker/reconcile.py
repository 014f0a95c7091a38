"""Reconciliation: make the database agree with what runs on the nodes.

For every node: ping it (no answer → node down, its sessions lost; an answer → up again, and its
engine-reported CPUs and memory re-read); list the
containers carrying this broker's labels (``asci.managed=1``,
``asci.broker=<instance>``); re-adopt running containers of active sessions
(record container id, mark running — this is what a broker restart relies
on); mark sessions whose container vanished or exited ``lost``; remove
containers whose session has ended or is unknown. Sessions still inside
their start time-out are left to the launch in progress. Session folders
(``broker.rundir``) of this broker's ended or unknown sessions are removed. A node with an agent
(``broker.agent``) is up only while both its engine and its agent answer; its session folders are
swept on the node through the agent.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from asci.db import utcnow
from broker import logs, rundir
from broker.agent_client import AgentNode
from broker.backends.base import NodeRef
from broker.errors import BackendError
from broker.models import ACTIVE_STATES, DesktopSession, Node, NodeState, SessionState
from broker.nodes import refresh_capacity


def reconcile(broker, db: Session) -> dict:
    """One pass over every node; returns counts of what changed."""
    summary = {"adopted": 0, "lost": 0, "removed": 0, "nodes_down": 0, "nodes_up": 0}
    now = utcnow()
    grace = dt.timedelta(seconds=broker.settings.session_start_timeout_s)
    for node in db.scalars(select(Node).order_by(Node.id)).all():
        ref = NodeRef.of(node)
        agent = AgentNode.of(ref)
        agent_state = "up"
        try:
            broker.backend.ping(ref)
            if agent is not None:
                agent_state = "down"
                agent.ping()  # a node whose agent is silent serves no desktop: down like a silent engine
                agent_state = "up"
            found = {m.session_id: m for m in broker.backend.list_managed(ref, broker.settings.broker_instance)}
            if refresh_capacity(broker.backend, db, node):
                logs.event("node.capacity", node=node.name, cpus=node.cpus, memory_bytes=node.memory_bytes)
        except BackendError as exc:  # no answer (NodeUnreachable), or an engine that refuses to say
            if node.state == NodeState.UP:
                broker.node_down(db, node.id, str(exc))
                summary["nodes_down"] += 1
            if agent is not None and node.agent_state != agent_state:
                node.agent_state = agent_state
                db.commit()
            continue
        if node.state != NodeState.UP:
            logs.event("node.up", node=node.name)
        node.state, node.last_seen, node.last_error = NodeState.UP, now, ""
        if agent is not None:
            node.agent_state = "up"
        summary["nodes_up"] += 1
        active = db.scalars(select(DesktopSession).where(DesktopSession.node_id == node.id,
                                                         DesktopSession.state.in_(ACTIVE_STATES))).all()
        for desktop in active:
            managed = found.pop(desktop.id, None)
            young = desktop.state in (SessionState.PENDING, SessionState.STARTING) and now - desktop.created_at < grace
            if managed is not None and managed.running:
                if desktop.state != SessionState.RUNNING or desktop.backend_state != managed.state:
                    desktop.state, desktop.backend_state = SessionState.RUNNING, managed.state
                    desktop.started_at = desktop.started_at or now
                    desktop.last_activity = desktop.last_activity or now
                    summary["adopted"] += 1
                    logs.event("session.adopted", session=desktop.id, node=node.name)
            elif young:
                continue
            else:
                why = "its desktop exited" if managed is not None else "its container vanished"
                if managed is not None:
                    _remove(broker, ref, managed)
                desktop.state, desktop.message, desktop.stopped_at = SessionState.LOST, f"session lost: {why}", now
                broker.release(db, desktop)
                summary["lost"] += 1
                logs.event("session.lost", session=desktop.id, node=node.name, reason=why)
        for managed in found.values():  # containers whose session ended or is unknown
            _remove(broker, ref, managed)
            summary["removed"] += 1
            logs.event("container.orphan_removed", node=node.name, session=managed.session_id)
        db.commit()
        if agent is not None:
            summary["folders_removed"] = summary.get("folders_removed", 0) + _sweep_agent(broker, db, node, agent)
    stale = db.scalars(select(DesktopSession).where(DesktopSession.state == SessionState.PENDING,
                                                    DesktopSession.created_at < now - grace)).all()
    for desktop in stale:
        desktop.state, desktop.message, desktop.stopped_at = SessionState.FAILED, "the launch never got a node", now
        broker.release(db, desktop)
    db.commit()
    active = db.scalars(select(DesktopSession.id).where(DesktopSession.state.in_(ACTIVE_STATES))).all()
    instance = broker.settings.broker_instance
    summary["folders_removed"] = summary.get("folders_removed", 0) + len(rundir.sweep(broker.settings.run_dir, instance,
                                                  {rundir.session_key(instance, sid) for sid in active}))
    return summary


def _remove(broker, ref: NodeRef, managed) -> None:
    try:
        broker.backend.stop(ref, managed.state)
    except BackendError as exc:
        logs.event("container.remove_failed", session=managed.session_id, error=str(exc))


def _sweep_agent(broker, db: Session, node: Node, agent: AgentNode) -> int:
    """Remove the node's folders of this broker's sessions that are no longer active on it (a sweep that
    fails is retried next pass)."""
    instance = broker.settings.broker_instance
    active = db.scalars(select(DesktopSession.id).where(DesktopSession.node_id == node.id,
                                                        DesktopSession.state.in_(ACTIVE_STATES))).all()
    try:
        return len(agent.sweep(instance, {rundir.session_key(instance, sid) for sid in active}))
    except BackendError as exc:
        logs.event("node.sweep_failed", node=node.name, error=str(exc))
        return 0
