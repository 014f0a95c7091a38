"""Where a session's node-side things are, for local nodes and for nodes with an agent alike: the
session folder's removal, homes under the shared home root, the experiment's data folder, and a
viewer's way to the VNC bytes (a path here, or a bridge through the node's agent)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sqlalchemy import select

from asci.config import Settings
from asci.db import session_scope
from broker import logs, rundir
from broker.agent.server import make_home
from broker.agent_client import AgentNode, LocalBridge, RelayRequest, parse_socket_uri
from broker.backends.base import LaunchSpec, NodeRef
from broker.errors import BackendError
from broker.models import Node, NodeState


def check_data(agent: AgentNode, data_path: str) -> None:
    """BackendError naming the node and the path unless the node has the experiment's data folder."""
    if data_path and not agent.has_data(data_path):
        raise BackendError(f"node {agent.name} has no folder {data_path} (the experiment's data); "
                           "it must be on every node at the same path")


def with_home(settings: Settings, agent: AgentNode | None, spec: LaunchSpec) -> LaunchSpec:
    """``spec`` with the user's home bound from ``home_root/<user>`` (made with the user's uid, 0700, on
    the node by its agent, or here for a local node), or as it is when no home root is set."""
    if not settings.home_root:
        return spec
    if agent is not None:
        home = agent.make_home(settings.home_root, spec.user_name, spec.uid, spec.gid)
    else:
        home = str(make_home(Path(settings.home_root), spec.user_name, spec.uid, spec.gid))
    return dataclasses.replace(spec, home_bind=home)


def remove_folder(node: Node | None, vnc_socket: str) -> None:
    """Delete an ended session's folder: here, or on its node through the agent (best effort: a node
    that is down keeps it until its agent's next sweep)."""
    remote = parse_socket_uri(vnc_socket)
    if remote is None:
        rundir.remove_for_socket(vnc_socket)
        return
    agent = AgentNode.of(NodeRef.of(node)) if node is not None else None
    if agent is None or node.state != NodeState.UP:
        return
    try:
        agent.remove(remote[1])
    except BackendError as exc:
        logs.event("session.folder_remove_failed", node=node.name, folder=remote[1], error=str(exc))


def agent_of(settings: Settings, node_name: str) -> AgentNode | None:
    """The agent of the registered node ``node_name`` (None: no such node, or no agent)."""
    with session_scope(settings) as db:
        node = db.scalar(select(Node).where(Node.name == node_name))
        return AgentNode.of(NodeRef.of(node)) if node is not None else None


def agent_relay(settings: Settings, vnc_socket: str, viewer: str = "owner") -> RelayRequest | None:
    """For a session on a node with an agent, the request that opens ``viewer``'s relay there from an
    event loop (no bridge, no thread); None for a socket on this machine or a node without its agent."""
    remote = parse_socket_uri(vnc_socket)
    if remote is None:
        return None
    agent = agent_of(settings, remote[0])
    return agent.relay_request(remote[1], viewer) if agent is not None else None


def open_viewer(settings: Settings, vnc_socket: str, viewer: str = "owner", once: bool = True) -> str | None:
    """A Unix socket path here that reaches the session's VNC server: the locked socket itself for a
    local node (``rundir.checked_socket``), a :class:`LocalBridge` through the node's agent (verified
    by its certificate, a fresh relay ticket per connection) for a node with one; None when neither."""
    remote = parse_socket_uri(vnc_socket)
    if remote is None:
        return rundir.checked_socket(vnc_socket)
    agent = agent_of(settings, remote[0])
    if agent is None:
        return None
    bridge = LocalBridge(agent, remote[1], viewer, parent=settings.run_dir / "bridges", once=once)
    return bridge.path
