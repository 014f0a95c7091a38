"""Registering the Docker hosts (or Swarm nodes) sessions run on, with their capacity.

A node's CPUs and memory are read from its engine (``docker info``) unless the administrator gives
them; read ones are kept current by reconciliation (``refresh_capacity``). Its reserve and overcommit
factors default to the settings (``node_reserve_cpus`` ...) when it is first registered.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from asci.config import Settings
from broker.backends.base import NodeRef
from broker.models import CapacitySource, Node, NodeState


def register_node(settings: Settings, db: Session, name: str, docker_url: str, *, backend=None,
                  cpus: float | None = None,
                  memory_bytes: int | None = None, max_sessions: int | None = None, tls_ca: str = "",
                  tls_cert: str = "", tls_key: str = "", gpus: list[dict] | None = None,
                  reserve_cpus: float | None = None, reserve_memory_bytes: int | None = None,
                  cpu_overcommit: float | None = None, memory_overcommit: float | None = None,
                  agent: str | None = None) -> Node:
    """Add node ``name`` or update it (it is marked up).

    ``cpus`` and ``memory_bytes`` left out are read from the node's engine (NodeUnreachable when it
    does not answer) and kept current by reconciliation; given ones are kept as they are. Other
    values left out keep what the node had (the settings' defaults for a new node); its GPUs are
    kept unless ``gpus`` is given. A node without an ``agent`` (``HOST:PORT``) must share this
    machine's filesystem (the sessions' VNC sockets under ``session_run_dir``; see ``broker.rundir``);
    a node with one keeps its sessions' folders itself (``broker.agent``), and its agent must answer
    as that node over TLS with the node's certificates (NodeUnreachable otherwise). ``backend`` reads the
    engine (default: the one ``settings.broker_backend`` names).
    """
    from broker.service import make_backend

    node = db.scalar(select(Node).where(Node.name == name))
    if node is None:
        node = Node(name=name, gpus=[], tls_verify=True, reserve_cpus=settings.node_reserve_cpus,
                    reserve_memory_bytes=settings.node_reserve_memory_mb << 20,
                    cpu_overcommit=settings.node_cpu_overcommit, memory_overcommit=settings.node_memory_overcommit,
                    max_sessions=settings.node_max_sessions)
        db.add(node)
    node.docker_url = docker_url
    node.tls_ca, node.tls_cert, node.tls_key, node.state = tls_ca, tls_cert, tls_key, NodeState.UP
    if agent is not None:
        node.agent = agent
    check_agent(node)
    if cpus is None or memory_bytes is None:
        engine = (backend or make_backend(settings)).capacity(NodeRef.of(node))
        node.capacity_source = CapacitySource.ENGINE if cpus is None and memory_bytes is None else CapacitySource.MANUAL
        cpus = engine.cpus if cpus is None else cpus
        memory_bytes = engine.memory_bytes if memory_bytes is None else memory_bytes
    else:
        node.capacity_source = CapacitySource.MANUAL
    node.cpus, node.memory_bytes = float(cpus), int(memory_bytes)
    for column, value in (("max_sessions", max_sessions), ("reserve_cpus", reserve_cpus),
                          ("reserve_memory_bytes", reserve_memory_bytes), ("cpu_overcommit", cpu_overcommit),
                          ("memory_overcommit", memory_overcommit)):
        if value is not None:
            setattr(node, column, value)
    if gpus is not None:
        node.gpus = gpus
    node.gpus = node.gpus or []
    db.flush()
    return node


def refresh_capacity(backend, db: Session, node: Node) -> bool:
    """Re-read an engine-reported node's CPUs and memory; True when they changed."""
    if node.capacity_source != CapacitySource.ENGINE:
        return False
    engine = backend.capacity(NodeRef.of(node))
    if (node.cpus, node.memory_bytes) == (engine.cpus, engine.memory_bytes):
        return False
    node.cpus, node.memory_bytes = engine.cpus, engine.memory_bytes
    return True


def has_nodes(db: Session) -> bool:
    """True when at least one node is registered."""
    return db.scalar(select(Node.id).limit(1)) is not None


def up_nodes(db: Session) -> list[Node]:
    """The nodes that answer, by id."""
    return list(db.scalars(select(Node).where(Node.state == NodeState.UP).order_by(Node.id)))


def check_agent(node: Node) -> None:
    """NodeUnreachable unless ``node``'s agent (if it has one) answers as that node; BadRequest for an
    unusable address."""
    from broker.agent_client import AgentNode, parse_address
    from broker.errors import BadRequest

    if not node.agent:
        return
    try:
        parse_address(node.agent)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    AgentNode.of(NodeRef.of(node)).ping()


def update_node(settings: Settings, db: Session, name: str, *, tls_ca: str | None = None,
                tls_cert: str | None = None, tls_key: str | None = None, agent: str | None = None,
                backend=None) -> Node:
    """Change node ``name``'s certificates or agent (given values only); the engine (read by ``backend``,
    default: the one ``settings.broker_backend`` names) and the agent must answer with them
    (NodeUnreachable, nothing changed). Running desktops are not touched."""
    from broker.errors import NotFound
    from broker.service import make_backend

    node = db.scalar(select(Node).where(Node.name == name))
    if node is None:
        raise NotFound(f"no node {name!r}")
    for column, value in (("tls_ca", tls_ca), ("tls_cert", tls_cert), ("tls_key", tls_key), ("agent", agent)):
        if value is not None:
            setattr(node, column, value)
    try:
        (backend or make_backend(settings)).ping(NodeRef.of(node))
        check_agent(node)
    except Exception:
        db.rollback()
        raise
    db.flush()
    return node


def remove_node(settings: Settings, db: Session, name: str, force: bool = False, broker=None) -> int:
    """Forget node ``name``; Conflict while sessions are active on it, unless ``force`` stops them
    first (with ``broker``, default: one for ``settings``). The number of sessions stopped."""
    from broker.errors import Conflict, NotFound
    from broker.models import ACTIVE_STATES, DesktopSession
    from broker.service import Broker

    node = db.scalar(select(Node).where(Node.name == name))
    if node is None:
        raise NotFound(f"no node {name!r}")
    active = db.scalars(select(DesktopSession).where(DesktopSession.node_id == node.id,
                                                     DesktopSession.state.in_(ACTIVE_STATES))).all()
    if active and not force:
        raise Conflict(f"node {name} has {len(active)} active sessions; drain it and wait, or --force stops them")
    broker = broker or Broker(settings)
    for desktop in active:
        broker.stop_session(db, desktop, f"node {name} was removed by an administrator")
    for desktop in db.scalars(select(DesktopSession).where(DesktopSession.node_id == node.id)).all():
        desktop.node_id = None  # ended sessions keep their history
    db.flush()
    db.delete(node)
    db.flush()
    return len(active)
