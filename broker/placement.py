"""Choosing a node: up, with room for the session's guarantee, a session slot and (when asked) a GPU slot.

A node's schedulable capacity is what its engine reports minus its reserve, times its overcommit
factor (``schedulable``); the guarantees of its active sessions count against it (``usage``). The
policy (``settings.placement_policy``) orders the nodes that fit: ``spread`` puts the session on
the node with the most free guaranteed memory (sessions share the nodes out), ``pack`` on the one
with the least that still fits (nodes fill up one after the other, the others stay free for big
sessions or can be drained). On PostgreSQL the chosen node's row is locked (``SELECT ... FOR
UPDATE``) so that concurrent launches on one node serialize their capacity check and lease inserts.

``refusal`` tells a request that no registered node could ever hold (HTTP 422) from one that
only has to wait for room (503).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broker import gpus as gpu_module
from broker.models import ACTIVE_STATES, DesktopSession, Node, NodeState

EPSILON = 1e-9


@dataclass(frozen=True)
class Demand:
    """What a session needs from a node to be placed there."""

    cpu_guarantee: float
    memory_guarantee_bytes: int
    gpu: bool = False


@dataclass
class Usage:
    """What a node's active sessions hold (guarantees)."""

    sessions: int = 0
    cpus: float = 0.0
    memory_bytes: int = 0


def schedulable(node: Node) -> tuple[float, int]:
    """``(cpus, memory bytes)`` placement may hand out as guarantees on ``node``."""
    cpus = max(0.0, node.cpus - node.reserve_cpus) * node.cpu_overcommit
    memory = int(max(0, node.memory_bytes - node.reserve_memory_bytes) * node.memory_overcommit)
    return cpus, memory


def usage(db: Session, node: Node) -> Usage:
    """Guaranteed CPU, memory and session counts of ``node``'s active sessions."""
    count, cpus, memory = db.execute(
        select(func.count(DesktopSession.id), func.coalesce(func.sum(DesktopSession.cpu_guarantee), 0.0),
               func.coalesce(func.sum(DesktopSession.memory_guarantee_bytes), 0))
        .where(DesktopSession.node_id == node.id, DesktopSession.state.in_(ACTIVE_STATES))).one()
    return Usage(int(count), float(cpus), int(memory))


def could_ever_hold(node: Node, demand: Demand) -> bool:
    """True when ``node``, empty, would have room for ``demand``."""
    cpus, memory = schedulable(node)
    return (demand.cpu_guarantee <= cpus + EPSILON and demand.memory_guarantee_bytes <= memory
            and node.max_sessions > 0 and (not demand.gpu or bool(node.gpus)))


def fits(db: Session, node: Node, demand: Demand, share_count: int, used: Usage | None = None) -> bool:
    """True when ``node`` has room for one more session of this size now."""
    used = used or usage(db, node)
    if used.sessions >= node.max_sessions:
        return False
    cpus, memory = schedulable(node)
    if used.cpus + demand.cpu_guarantee > cpus + EPSILON or used.memory_bytes + demand.memory_guarantee_bytes > memory:
        return False
    return not demand.gpu or gpu_module.free_gpu_slots(db, node, share_count) > 0


def candidates(db: Session, demand: Demand, share_count: int, policy: str = "spread",
               exclude: set[int] = frozenset()) -> list[Node]:
    """Up nodes that fit ``demand`` now, best first by ``policy`` (``spread`` or ``pack``)."""
    nodes = db.scalars(select(Node).where(Node.state == NodeState.UP).order_by(Node.id)).all()
    ranked = []
    for node in nodes:
        if node.id in exclude or node.drained or (demand.gpu and not node.gpus):
            continue
        used = usage(db, node)
        if fits(db, node, demand, share_count, used):
            free_memory = schedulable(node)[1] - used.memory_bytes
            ranked.append(((-free_memory if policy == "spread" else free_memory),
                           (used.sessions if policy == "spread" else -used.sessions), node.id, node))
    ranked.sort(key=lambda row: row[:3])
    return [row[3] for row in ranked]


def refusal(db: Session, demand: Demand) -> str | None:
    """Why no registered node could ever hold ``demand`` (None when one could, given time)."""
    nodes = db.scalars(select(Node).order_by(Node.id)).all()
    if not nodes or any(could_ever_hold(node, demand) for node in nodes):
        return None
    if demand.gpu and not any(node.gpus for node in nodes):
        return "no node has a GPU"
    largest = max(nodes, key=lambda node: schedulable(node)[1])
    cpus, memory = schedulable(largest)
    return (f"the session asks for a guarantee of {demand.cpu_guarantee:g} CPUs and "
            f"{demand.memory_guarantee_bytes / 2**30:.3g} GiB{' and a GPU' if demand.gpu else ''}, more than any node "
            f"can hold (the largest, {largest.name}, schedules {cpus:g} CPUs and {memory / 2**30:.3g} GiB)")


def lock_node(db: Session, node_id: int) -> Node:
    """Re-read ``node_id`` with a row lock (PostgreSQL; SQLite serializes writers anyway)."""
    statement = select(Node).where(Node.id == node_id)
    if db.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    return db.execute(statement).scalar_one()
