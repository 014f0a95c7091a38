"""Registering the Docker hosts (or Swarm nodes) sessions run on."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.models import Node, NodeState


def register_node(db: Session, name: str, docker_url: str, *, cpus: float, memory_bytes: int,
                  max_sessions: int, tls_ca: str = "", tls_cert: str = "", tls_key: str = "",
                  gpus: list[dict] | None = None) -> Node:
    """Add node ``name`` or update it (it is marked up; its GPUs are kept unless ``gpus`` is given)."""
    node = db.scalar(select(Node).where(Node.name == name))
    if node is None:
        node = Node(name=name, gpus=[])
        db.add(node)
    node.docker_url, node.cpus, node.memory_bytes, node.max_sessions = docker_url, cpus, memory_bytes, max_sessions
    node.tls_ca, node.tls_cert, node.tls_key, node.state = tls_ca, tls_cert, tls_key, NodeState.UP
    if gpus is not None:
        node.gpus = gpus
    node.gpus = node.gpus or []
    db.flush()
    return node


def has_nodes(db: Session) -> bool:
    """True when at least one node is registered."""
    return db.scalar(select(Node.id).limit(1)) is not None


def up_nodes(db: Session) -> list[Node]:
    """The nodes that answer, by id."""
    return list(db.scalars(select(Node).where(Node.state == NodeState.UP).order_by(Node.id)))
