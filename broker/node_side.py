"""The node side of a launch: what has to happen on the node itself, behind one seam.

A desktop needs a session folder on its node before it starts (the password file, the hosts file,
the folder its VNC socket appears in: ``prepare``), a proof that its own VNC server serves that
socket before it counts as running (``ready``), and the folder removed once it ends (``release``).
:class:`LocalNodeSide` does all three on this machine's filesystem (``broker.rundir``), which every
node's engine shares today; a node reached through an agent plugs in another :class:`NodeSide`
(``Broker(node_sides=...)`` picks one per node).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

from broker import rundir
from broker.backends.base import NodeRef

# (session folder, uid, container id getter) -> bool; raises ForeignServer (see rundir.ready)
ReadyCheck = Callable[[rundir.SessionDir, int, Callable[[], str]], bool]


class NodeSide(Protocol):
    """The node's part of a launch (raise ``BackendError``, or ``NodeUnreachable`` when the node does not answer)."""

    def prepare(self, node: NodeRef, key: str, uid: int, gid: int, password: str, view_password: str,
                hostname: str) -> rundir.SessionDir:
        """Make session ``key``'s folder on ``node`` (password file for ``uid``/``gid``, hosts file naming
        ``hostname``); a stale folder of the same key is replaced. Returns where it is on the node."""

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
                hostname: str) -> rundir.SessionDir:
        return rundir.prepare(self.run_dir, key, uid, gid, password, view_password, hostname)

    def ready(self, node: NodeRef, folder: rundir.SessionDir, uid: int, container_id: Callable[[], str]) -> bool:
        return self._ready(folder, uid, container_id)

    def release(self, node: NodeRef | None, socket: str) -> None:
        rundir.remove_for_socket(socket)
