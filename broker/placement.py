"""Choosing a node: up, with free CPUs, memory, session slots and (when asked) a GPU slot.

Nodes are ranked by free memory; on PostgreSQL the chosen node's row is
locked (``SELECT ... FOR UPDATE``) so that concurrent launches on one node
serialize their capacity check and lease inserts.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broker import gpus as gpu_module
from broker.models import ACTIVE_STATES, DesktopSession, Node, NodeState


@dataclass
class Usage:
    """What a node's active sessions hold."""

    sessions: int = 0
    cpus: float = 0.0
    memory_bytes: int = 0


def usage(db: Session, node: Node) -> Usage:
    """CPU, memory and session counts of ``node``'s active sessions."""
    count, cpus, memory = db.execute(
        select(func.count(DesktopSession.id), func.coalesce(func.sum(DesktopSession.cpus), 0.0),
               func.coalesce(func.sum(DesktopSession.memory_bytes), 0))
        .where(DesktopSession.node_id == node.id, DesktopSession.state.in_(ACTIVE_STATES))).one()
    return Usage(int(count), float(cpus), int(memory))


def fits(db: Session, node: Node, cpus: float, memory_bytes: int, gpu: bool, share_count: int) -> bool:
    """True when ``node`` has room for one more session of this size."""
    used = usage(db, node)
    if used.sessions >= node.max_sessions:
        return False
    if used.cpus + cpus > node.cpus + 1e-9 or used.memory_bytes + memory_bytes > node.memory_bytes:
        return False
    return not gpu or gpu_module.free_gpu_slots(db, node, share_count) > 0


def candidates(db: Session, cpus: float, memory_bytes: int, gpu: bool, share_count: int,
               exclude: set[int] = frozenset()) -> list[Node]:
    """Up nodes that fit the request, the one with the most free memory first."""
    nodes = db.scalars(select(Node).where(Node.state == NodeState.UP).order_by(Node.id)).all()
    ranked = []
    for node in nodes:
        if node.id in exclude or (gpu and not node.gpus):
            continue
        if fits(db, node, cpus, memory_bytes, gpu, share_count):
            ranked.append((node.memory_bytes - usage(db, node).memory_bytes, node))
    ranked.sort(key=lambda pair: -pair[0])
    return [node for _, node in ranked]


def lock_node(db: Session, node_id: int) -> Node:
    """Re-read ``node_id`` with a row lock (PostgreSQL; SQLite serializes writers anyway)."""
    statement = select(Node).where(Node.id == node_id)
    if db.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    return db.execute(statement).scalar_one()
