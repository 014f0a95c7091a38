"""VNC port (and X display) allocation, made collision-free by the database.

A :class:`broker.models.PortLease` row per active session, unique on
``(node_id, port)``: two concurrent launches can never hold the same port on a
node; the loser of a race gets an IntegrityError and the service retries.
The X display number is derived from the port (``port - 5900``, or the
offset into the node's range when it starts below 5901), so it is unique on
the node as well.
"""

from __future__ import annotations

import random

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.models import Node, PortLease


def display_for(node: Node, port: int) -> int:
    """The X display number of the session on ``port``: unique per node like the port."""
    return port - 5900 if node.port_min > 5900 else 1 + port - node.port_min


def lease_port(db: Session, node: Node, session_id: int) -> int | None:
    """Add a lease for a free port of ``node`` (a random one, to make races rare); None when full."""
    taken = set(db.scalars(select(PortLease.port).where(PortLease.node_id == node.id)))
    free = [port for port in range(node.port_min, node.port_max + 1) if port not in taken]
    if not free:
        return None
    port = random.choice(free)
    db.add(PortLease(node_id=node.id, port=port, session_id=session_id))
    return port


def release(db: Session, session_id: int) -> None:
    """Drop the port and GPU leases of a session that ended."""
    from sqlalchemy import delete

    from broker.models import GpuLease

    db.execute(delete(PortLease).where(PortLease.session_id == session_id))
    db.execute(delete(GpuLease).where(GpuLease.session_id == session_id))
