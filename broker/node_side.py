"""The node side of a launch: what has to happen on the node itself, behind one seam.

A desktop needs a session folder on its node before it starts (the password file, the hosts file,
the folder its VNC socket appears in: ``prepare``), a proof that its own VNC server serves that
socket before it counts as running (``ready``), and the folder removed once it ends (``release``).
:class:`LocalNodeSide` does all three on this machine's filesystem (``broker.rundir``), which every
node's engine shares today; a node reached through an agent plugs in another :class:`NodeSide`
(:class:`AgentNodeSide`: the node's agent does it over mutual TLS; ``Broker.node_side`` picks it for a
node registered with ``--agent``, ``Broker(node_sides=...)`` may pick another).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

import dataclasses

from broker import logs, rundir
from broker.agent_client import AgentNode, parse_socket_uri, socket_uri
from broker.backends.base import LaunchSpec, NodeRef
from broker.errors import BackendError

# (session folder, uid, container id getter) -> bool; raises ForeignServer (see rundir.ready)
ReadyCheck = Callable[[rundir.SessionDir, int, Callable[[], str]], bool]


class NodeSide(Protocol):
    """The node's part of a launch (raise ``BackendError``, or ``NodeUnreachable`` when the node does not answer)."""

    def prepare(self, node: NodeRef, key: str, uid: int, gid: int, password: str, view_password: str,
                hostname: str, data_path: str = "") -> rundir.SessionDir:
        """Make session ``key``'s folder on ``node`` (password file for ``uid``/``gid``, hosts file naming
        ``hostname``); a stale folder of the same key is replaced. Returns where it is on the node.
        ``data_path``: the experiment's data folder, which the node must have (BackendError naming both)."""

    def socket_of(self, node: NodeRef, key: str, folder: rundir.SessionDir) -> str:
        """What the session records as its VNC socket (a path here, or ``agent://node/key``)."""

    def with_home(self, home_root: str, spec: LaunchSpec) -> LaunchSpec:
        """``spec`` with the user's home bound from ``home_root/<user>`` on the node (made with the user's
        uid, 0700), or as it is when ``home_root`` is empty (node-local volumes)."""

    def ready(self, node: NodeRef, folder: rundir.SessionDir, uid: int, container_id: Callable[[], str]) -> bool:
        """One readiness step: False while the desktop's VNC server is not serving ``folder.socket`` yet;
        True once it is, locked and proved to run as ``uid`` in the container ``container_id()`` names.
        Raises ``ForeignServer`` when anything else answers there."""

    def release(self, node: NodeRef | None, socket: str) -> None:
        """Remove the session folder whose VNC socket is ``socket`` (anything else is left alone)."""


class LocalNodeSide:
    """The node side on this machine's filesystem (``broker.rundir`` under ``run_dir``)."""

    def __init__(self, run_dir: Path, ready: ReadyCheck | None = None) -> None:
        self.run_dir = Path(run_dir)
        self._ready = ready or rundir.ready

    def prepare(self, node: NodeRef, key: str, uid: int, gid: int, password: str, view_password: str,
                hostname: str, data_path: str = "") -> rundir.SessionDir:
        return rundir.prepare(self.run_dir, key, uid, gid, password, view_password, hostname)

    def socket_of(self, node: NodeRef, key: str, folder: rundir.SessionDir) -> str:
        return str(folder.socket)

    def with_home(self, home_root: str, spec: LaunchSpec) -> LaunchSpec:
        if not home_root:
            return spec
        from broker.agent.server import make_home

        return dataclasses.replace(spec, home_bind=str(make_home(Path(home_root), spec.user_name, spec.uid, spec.gid)))

    def ready(self, node: NodeRef, folder: rundir.SessionDir, uid: int, container_id: Callable[[], str]) -> bool:
        return self._ready(folder, uid, container_id)

    def release(self, node: NodeRef | None, socket: str) -> None:
        rundir.remove_for_socket(socket)


class AgentNodeSide:
    """The node side of a node on another machine: its agent (``broker.agent_client.AgentNode``, mutual TLS)
    keeps the session's folder, proves its VNC server and relays viewers; nothing of it is here."""

    def __init__(self, agent: AgentNode) -> None:
        self.agent = agent

    def prepare(self, node: NodeRef, key: str, uid: int, gid: int, password: str, view_password: str,
                hostname: str, data_path: str = "") -> rundir.SessionDir:
        if data_path and not self.agent.has_data(data_path):
            raise BackendError(f"node {node.name} has no folder {data_path} (the experiment's data); "
                               "it must be on every node at the same path")
        return self.agent.prepare(key, uid, gid, password, view_password, hostname)

    def socket_of(self, node: NodeRef, key: str, folder: rundir.SessionDir) -> str:
        return socket_uri(node.name, key)

    def with_home(self, home_root: str, spec: LaunchSpec) -> LaunchSpec:
        if not home_root:
            return spec
        return dataclasses.replace(spec, home_bind=self.agent.make_home(home_root, spec.user_name, spec.uid, spec.gid))

    def ready(self, node: NodeRef, folder: rundir.SessionDir, uid: int, container_id: Callable[[], str]) -> bool:
        return self.agent.ready(folder, uid, container_id)

    def release(self, node: NodeRef | None, socket: str) -> None:
        remote = parse_socket_uri(socket)
        if remote is None:  # a folder made here before the node got its agent
            rundir.remove_for_socket(socket)
            return
        try:
            self.agent.remove(remote[1])
        except BackendError as exc:  # best effort: the agent's sweep removes it once it answers again
            logs.event("session.folder_remove_failed", node=remote[0], folder=remote[1], error=str(exc))
