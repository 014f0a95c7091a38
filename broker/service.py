"""The broker core: launch, stop and touch sessions; time-outs, readiness and messages.

Each ``Broker`` drives one backend (``broker.backends``), which only talks to the engine; the
broker owns placement, the session folders (through each node's ``broker.node_side.NodeSide``),
the database state and every message a user sees. Backend state is opaque here: what
``backend.start`` returns is stored in ``sessions.backend_state`` and handed back to the backend as
it is. There is no process-wide broker: whoever needs one is given it (the Flask app keeps its own
in ``app.extensions``, a CLI command in its click context, see ``broker.handle``).

A launch is the state machine of ``broker.launch`` (reserve → place → prepare → start → await →
running). Every desktop, a user's session or the smoke gate's probe, starts the same way: a session
folder with its password file (``NodeSide.prepare``), a :class:`LaunchSpec` from :func:`desktop_spec`,
the backend's ``start``, then :meth:`Broker.await_desktop`, which returns only once the session's own
VNC server (proved by ``NodeSide.ready``) serves the session's socket.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from asci.accounts import User
from asci.config import Settings
from asci.db import session_scope, utcnow
from broker import gpus, launch as launching, logs, rundir
from broker.backends.base import Backend, NodeRef
from broker.errors import BackendError, NodeUnreachable, NotFound
from broker.launch import LaunchRequest, desktop_spec, new_password, recipe_defaults
from broker.models import FINAL_STATES, DesktopSession, Node, NodeState, SessionState
from broker.agent_client import AgentNode
from broker.node_side import AgentNodeSide, LocalNodeSide, NodeSide, ReadyCheck
from broker.views import get_session

__all__ = ["Broker", "VncTarget", "LaunchRequest", "desktop_spec", "make_backend", "new_password", "recipe_defaults"]

log = logging.getLogger(__name__)
RUNNER_THREADS = 64  # launches the background runner finishes at once (each mostly waits on its desktop)


def make_backend(settings: Settings) -> Backend:
    """The backend named by ``settings.broker_backend``."""
    if settings.broker_backend == "swarm":
        from broker.backends.swarm import SwarmBackend

        return SwarmBackend(settings.docker_hosts[0])
    from broker.backends.docker import DockerBackend

    return DockerBackend()


class VncTarget(NamedTuple):
    """Where a running session's VNC server listens (a Unix socket on this machine) and its passwords."""

    socket: str
    password: str
    view_password: str


class Broker:
    """Launches and stops sessions with one backend; owns timeouts and messages."""

    def __init__(self, settings: Settings, backend: Backend | None = None, ready: ReadyCheck | None = None,
                 node_sides: Callable[[NodeRef], NodeSide] | None = None) -> None:
        """``ready`` replaces the local node side's readiness proof (tests); ``node_sides(node)`` picks the
        node side of a node (default: :class:`LocalNodeSide` under ``settings.run_dir`` for every node)."""
        self.settings = settings
        self._backend = backend
        self.local_side = LocalNodeSide(settings.run_dir, ready)
        self._node_sides = node_sides
        self._runner: ThreadPoolExecutor | None = None
        self._runner_lock = threading.Lock()
        logs.configure(settings.log_format)

    @property
    def backend(self) -> Backend:
        """The backend, made on first use: lookups (``vnc_target``, ``touch``; websockify's token plugin
        makes a broker in every connection's process) never import the engine's client library."""
        if self._backend is None:
            self._backend = make_backend(self.settings)
        return self._backend

    def node_side(self, node: NodeRef) -> NodeSide:
        """The node side (session folders, readiness) of ``node``."""
        if self._node_sides is not None:
            return self._node_sides(node)
        agent = AgentNode.of(node)
        return AgentNodeSide(agent) if agent is not None else self.local_side

    # ---------------------------------------------------------------- launch
    def launch(self, db: Session, user: User, request: LaunchRequest | str, version: str = "current",
               experiment: str = "", **options) -> DesktopSession:
        """Start a session and wait until its VNC server answers; raises a BrokerError with the reason.

        ``request`` is a :class:`LaunchRequest`, or its environment with the other fields after it. A
        session no registered node could ever hold is refused at once (:class:`Unsatisfiable`, 422) and
        leaves no row; one that only has to wait for room fails with :class:`NoCapacity` (503). The
        steps are those of ``broker.launch``.
        """
        if not isinstance(request, LaunchRequest):
            request = LaunchRequest(request, version, experiment, **options)
        return launching.finish(self, db, launching.reserve(self, db, user, request))

    def launch_in_background(self, db: Session, user: User, request: LaunchRequest) -> int:
        """Reserve the session here (a refusal raises as in :meth:`launch`) and hand the rest of its launch
        to the broker's runner; returns its id at once (the session's state tells how it goes on)."""
        reserved = launching.reserve(self, db, user, request)
        session_id, began = reserved.desktop.id, reserved.began
        self.runner().submit(self._finish_reserved, session_id, began, request)
        return session_id

    def runner(self) -> ThreadPoolExecutor:
        """The executor that finishes background launches (made on first use)."""
        with self._runner_lock:
            if self._runner is None:
                self._runner = ThreadPoolExecutor(RUNNER_THREADS, thread_name_prefix="launch")
            return self._runner

    def close(self, wait: bool = True) -> None:
        """Stop taking background launches; ``wait`` for those under way."""
        with self._runner_lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.shutdown(wait=wait)

    def _finish_reserved(self, session_id: int, began: float, request: LaunchRequest) -> None:
        try:
            with session_scope(self.settings) as db:
                launching.finish(self, db, launching.resume(self, db, session_id, began))
        except BaseException as exc:  # the session's row says how it ended; nobody waits for this
            log.warning("launch of %s %s (session %s) failed: %s", request.environment, request.version,
                        session_id, exc)

    def await_desktop(self, ref: NodeRef, state: dict, folder: rundir.SessionDir, uid: int, timeout: float) -> None:
        """Return once the desktop's own VNC server serves its socket (locked and proved: ``NodeSide.ready``).

        Raises :class:`ForeignServer` when something else answers there, :class:`BackendError` with the
        reason and the desktop's last log lines when it exits or does not answer within ``timeout``.
        """
        deadline, side = time.monotonic() + timeout, self.node_side(ref)
        while True:
            if side.ready(ref, folder, uid, lambda: self.backend.container_id(ref, state)):
                return
            try:
                gone = self.backend.poll(ref, state)
            except BackendError:
                gone = None
            if gone or time.monotonic() > deadline:
                why = f"the desktop {gone}" if gone else f"the desktop did not answer within {timeout:.0f} s"
                tail = self.backend.logs(ref, state, tail=20).strip().splitlines()[-3:]
                raise BackendError(why + (": " + " | ".join(tail) if tail else ""))
            time.sleep(0.05)

    # ---------------------------------------------------------------- ending
    def stop_backend(self, ref: NodeRef, desktop: DesktopSession) -> None:
        """Stop the desktop's container, if it was started (a failure is logged, not raised)."""
        if not desktop.backend_state:
            return  # never started: nothing of it runs (reconciliation removes anything left)
        try:
            self.backend.stop(ref, desktop.backend_state)
        except BackendError as exc:
            logs.event("session.stop_failed", session=desktop.id, error=str(exc))

    def end(self, db: Session, desktop: DesktopSession, state: str, message: str) -> None:
        """Commit ``desktop`` ended in ``state`` with ``message``, and release what it held."""
        desktop.state, desktop.message, desktop.stopped_at = state, message, utcnow()
        self.release(db, desktop)
        db.commit()
        logs.event(f"session.{state}", session=desktop.id, message=message)

    def stop(self, db: Session, session_id: int, user: User, reason: str = "stopped by the user") -> DesktopSession:
        """Stop and remove a session's container; a session already ended is returned as it is."""
        desktop = get_session(db, session_id, user)
        return self.stop_session(db, desktop, reason)

    def stop_session(self, db: Session, desktop: DesktopSession, reason: str) -> DesktopSession:
        """Stop ``desktop`` without an authorisation check (culling, administrators)."""
        if desktop.state in FINAL_STATES:
            return desktop
        desktop.state = SessionState.STOPPING
        db.commit()
        if desktop.node is not None and desktop.backend_state:
            try:
                self.backend.stop(NodeRef.of(desktop.node), desktop.backend_state)
            except NodeUnreachable as exc:
                self.end(db, desktop, SessionState.LOST, f"{reason}; node unreachable ({exc}), its container is removed "
                                             "when the node answers again")
                return desktop
        self.end(db, desktop, SessionState.STOPPED, reason)
        return desktop

    def node_down(self, db: Session, node_id: int, reason: str) -> None:
        """Mark a node down and its active sessions lost."""
        db.rollback()
        node = db.get(Node, node_id)
        node.state, node.last_error = NodeState.DOWN, reason
        lost = db.scalars(select(DesktopSession).where(DesktopSession.node_id == node_id,
                                                       DesktopSession.state.in_((SessionState.STARTING, SessionState.RUNNING, SessionState.STOPPING)))).all()
        for desktop in lost:
            desktop.state, desktop.stopped_at = SessionState.LOST, utcnow()
            desktop.message = f"node {node.name} stopped answering; the session is lost"
            self.release(db, desktop)
        db.commit()
        logs.event("node.down", node=node.name, reason=reason, lost_sessions=[s.id for s in lost])

    def release(self, db: Session, desktop: DesktopSession) -> None:
        """What an ended session held: its GPU slot and its folder (socket and password file) on its node."""
        gpus.release(db, desktop.id)
        if desktop.vnc_socket:
            ref = NodeRef.of(desktop.node) if desktop.node is not None else None
            side = self.node_side(ref) if ref is not None else self.local_side
            side.release(ref, desktop.vnc_socket)

    # ---------------------------------------------------------------- lookups
    def vnc_target(self, session_id: int, user: User) -> VncTarget:
        """The socket and passwords of a running session the user may open."""
        with session_scope(self.settings) as db:
            desktop = get_session(db, session_id, user)
            if desktop.state != SessionState.RUNNING or desktop.node is None or not desktop.vnc_socket:
                raise NotFound(f"session {session_id} is not running")
            return VncTarget(desktop.vnc_socket, desktop.vnc_password, desktop.vnc_view_password)

    def touch(self, session_id: int) -> bool:
        """Record VNC client activity: the idle clock restarts and any idle warning is withdrawn.

        False when the session is not running (any more)."""
        with session_scope(self.settings) as db:
            desktop = db.get(DesktopSession, session_id)
            if desktop is None or desktop.state != SessionState.RUNNING:
                return False
            desktop.last_activity, desktop.warned_at = utcnow(), None
            if desktop.message.startswith("idle"):
                desktop.message = ""
            return True
