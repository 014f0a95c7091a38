"""The broker core: launch, stop and touch sessions; time-outs, readiness and messages.

Each ``Broker`` drives one backend (``broker.backends``), which only talks to the engine; the
broker owns placement, the session folders (``broker.rundir``), the database state and every
message a user sees. Backend state is opaque here: what ``backend.start`` returns is stored in
``sessions.backend_state`` and handed back to the backend as it is. A test or the web app can put
a ``Broker`` with another backend in place with ``install(settings, broker)``; the module
functions use the installed one.

Every desktop, a user's session or the smoke gate's probe, starts the same way: a session folder
with its password file (``rundir.prepare``), a :class:`LaunchSpec` from :func:`desktop_spec`, the
backend's ``start``, then :meth:`Broker.await_desktop`, which returns only once the session's own
VNC server (proved by ``rundir.ready``) serves the session's socket.
"""

from __future__ import annotations

import random
import secrets
import string
import threading
import time
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

import builder
from asci.accounts import User
from asci.config import Settings
from asci.db import session_scope, utcnow
from broker import containers, gpus, logs, placement, rundir
from broker.access import resolve
from broker.backends.base import Backend, LaunchSpec, NodeRef
from broker.errors import (BackendError, BadRequest, ForeignServer, NoCapacity, NodeUnreachable, NotFound,
                           QuotaExceeded, Unsatisfiable)
from broker.models import (ACTIVE_STATES, FINAL_STATES, DesktopSession, Experiment, Node, NodeState,
                           SessionState)
from broker.resources import Resources, resources
from broker.views import get_session


def make_backend(settings: Settings) -> Backend:
    """The backend named by ``settings.broker_backend``."""
    if settings.broker_backend == "swarm":
        from broker.backends.swarm import SwarmBackend

        return SwarmBackend(settings.docker_hosts[0])
    from broker.backends.docker import DockerBackend

    return DockerBackend()


def recipe_defaults(settings: Settings, environment: str) -> builder.ResourceDefaults | None:
    """The session defaults in ``environment``'s recipe (None when it has no readable recipe here)."""
    try:
        return builder.load_recipe(settings.recipes_dir, environment).resources
    except builder.RecipeError as exc:
        if "unknown environment" not in str(exc):
            logs.event("recipe.unreadable", environment=environment, error=str(exc))
        return None


def new_password() -> str:
    """A random VNC password (VNC authentication uses 8 characters)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


class VncTarget(NamedTuple):
    """Where a running session's VNC server listens (a Unix socket on this machine) and its passwords."""

    socket: str
    password: str
    view_password: str


def desktop_spec(settings: Settings, *, session_id: int, name: str, image: str, folder: rundir.SessionDir,
                 uid: int, gid: int, user_name: str, home_volume: str, home_path: str, cpus: float,
                 memory_bytes: int, cpu_guarantee: float, memory_guarantee_bytes: int, data_path: str = "",
                 gpu_uuid: str = "", labels: dict[str, str] | None = None) -> LaunchSpec:
    """The launch parameters of a desktop: the one place sessions and probes get their isolation from."""
    return LaunchSpec(session_id=session_id, name=name, image=image, run_dir=str(folder.path), uid=uid, gid=gid,
                      user_name=user_name, home_volume=home_volume, home_path=home_path, data_path=data_path,
                      data_read_only=settings.session_data_read_only, cpus=cpus, memory_bytes=memory_bytes,
                      cpu_guarantee=cpu_guarantee, memory_guarantee_bytes=memory_guarantee_bytes,
                      pids_limit=settings.session_pids_limit, gpu_uuid=gpu_uuid, network=settings.session_network,
                      labels=dict(labels or {}))


class Broker:
    """Launches and stops sessions with one backend; owns timeouts and messages."""

    def __init__(self, settings: Settings, backend: Backend | None = None, ready=None) -> None:
        self.settings = settings
        self._backend = backend
        # (session folder, uid, container id getter) -> bool; raises ForeignServer (see rundir.ready)
        self.ready = ready or rundir.ready
        logs.configure(settings.log_format)

    @property
    def backend(self) -> Backend:
        """The backend, made on first use: lookups (``vnc_target``, ``touch``; websockify's token plugin
        makes a broker in every connection's process) never import the engine's client library."""
        if self._backend is None:
            self._backend = make_backend(self.settings)
        return self._backend

    # ---------------------------------------------------------------- launch
    def launch(self, db: Session, user: User, environment: str, version: str = "current", experiment: str = "",
               gpu: bool = False, cpus=None, memory=None, cpu_guarantee=None, memory_guarantee=None,
               on_created=None) -> DesktopSession:
        """Start a session and wait until its VNC server answers; raises a BrokerError with the reason.

        ``cpus`` and ``memory`` are the limits asked for, ``cpu_guarantee`` and ``memory_guarantee``
        the guarantees (each defaults to the environment's recipe, then to the settings). A session
        no registered node could ever hold is refused at once (:class:`Unsatisfiable`, 422) and
        leaves no row; one that only has to wait for room fails with :class:`NoCapacity` (503).
        ``on_created(session_id)`` is called once the session's row is committed, before placement
        and start, so a caller can show progress for exactly this session.
        """
        began = time.monotonic()
        if not isinstance(gpu, bool):
            raise BadRequest(f"gpu: expected true or false, got {gpu!r}")
        launchable, exp = resolve(self.settings, db, user, environment, version, experiment)
        wanted = resources(self.settings, cpus, memory, cpu_guarantee, memory_guarantee,
                           defaults=recipe_defaults(self.settings, launchable.environment))
        demand = placement.Demand(wanted.cpu_guarantee, wanted.memory_guarantee_bytes, gpu)
        why = placement.refusal(db, demand)
        if why:
            db.rollback()
            raise Unsatisfiable(why)
        desktop = self._create_row(db, user, launchable, exp, gpu, wanted)
        if on_created is not None:
            on_created(desktop.id)
        logs.event("session.requested", session=desktop.id, user=user.username, environment=environment,
                   version=launchable.version, experiment=exp.code, gpu=gpu, cpu_guarantee=wanted.cpu_guarantee,
                   memory_guarantee=wanted.memory_guarantee_bytes)
        uid, gid = self._ids(user)
        excluded: set[int] = set()
        while True:
            node = self._place(db, desktop, excluded)
            ref = NodeRef.of(node)
            try:
                folder = rundir.prepare(self.settings.run_dir,
                                        rundir.session_key(self.settings.broker_instance, desktop.id), uid, gid,
                                        desktop.vnc_password, desktop.vnc_view_password,
                                        rundir.hostname_for(self._name(desktop)))
                desktop.vnc_socket = str(folder.socket)
                db.commit()
                self.backend.ensure_image(ref, desktop.image)
                state = self.backend.start(ref, self._spec(desktop, user, exp, folder, uid, gid))
            except NodeUnreachable as exc:
                gpus.release(db, desktop.id)
                desktop.state, desktop.node_id, desktop.gpu_uuid = SessionState.PENDING, None, ""
                db.commit()
                self.node_down(db, node.id, str(exc))
                excluded.add(node.id)
                continue
            except BackendError as exc:
                self._end(db, desktop, SessionState.FAILED, f"the desktop could not be started: {exc}")
                raise
            break
        desktop.backend_state = self.backend.get_state(state)
        db.commit()
        try:
            self.await_desktop(ref, desktop.backend_state, folder, uid, self.settings.session_start_timeout_s)
        except BackendError as exc:
            self._stop_backend(ref, desktop)
            self._end(db, desktop, SessionState.FAILED, str(exc))
            if isinstance(exc, ForeignServer):
                logs.event("session.foreign_server", session=desktop.id, node=node.name, error=str(exc))
            raise BackendError(f"session {desktop.id} failed to start: {exc}") from None
        now = utcnow()
        desktop.state, desktop.started_at, desktop.last_activity, desktop.message = SessionState.RUNNING, now, now, ""
        db.commit()
        logs.event("session.running", session=desktop.id, node=node.name, seconds=round(time.monotonic() - began, 3))
        return desktop

    def _create_row(self, db: Session, user: User, launchable: builder.LaunchableVersion, exp: Experiment,
                    gpu: bool, wanted: Resources) -> DesktopSession:
        for attempt in range(20):
            try:
                locked = select(User).where(User.id == user.id)
                if db.get_bind().dialect.name == "postgresql":
                    locked = locked.with_for_update()
                db.execute(locked)
                active = db.scalar(select(func.count(DesktopSession.id)).where(
                    DesktopSession.user_id == user.id, DesktopSession.state.in_(ACTIVE_STATES))) or 0
                if active >= self.settings.session_max_per_user:
                    db.rollback()
                    raise QuotaExceeded(f"you already have {active} active sessions "
                                        f"(at most {self.settings.session_max_per_user}); stop one first")
                desktop = DesktopSession(user_id=user.id, experiment_id=exp.id, environment_version_id=launchable.id,
                                         environment=launchable.environment, version=launchable.version,
                                         image=launchable.image, image_digest=launchable.image_digest,
                                         vnc_password=new_password(), vnc_view_password=new_password(),
                                         state=SessionState.PENDING,
                                         cpus=wanted.cpu_limit, memory_bytes=wanted.memory_limit_bytes,
                                         cpu_guarantee=wanted.cpu_guarantee,
                                         memory_guarantee_bytes=wanted.memory_guarantee_bytes, gpu=gpu,
                                         backend_state={})
                db.add(desktop)
                db.commit()
                return desktop
            except OperationalError:
                db.rollback()
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
        raise BackendError("the database is too busy; try again")

    def _place(self, db: Session, desktop: DesktopSession, excluded: set[int]) -> Node:
        """Pick a node (and lease a GPU slot) for ``desktop``; commits."""
        share, policy = self.settings.gpu_share_count, self.settings.placement_policy
        demand = placement.Demand(desktop.cpu_guarantee, desktop.memory_guarantee_bytes, desktop.gpu)
        for attempt in range(40):
            try:
                nodes = placement.candidates(db, demand, share, policy, excluded)
                if not nodes:
                    db.rollback()
                    what = "a free GPU" if desktop.gpu else "free capacity"
                    self._end(db, desktop, SessionState.FAILED, f"no node has {what} for this session right now")
                    raise NoCapacity(f"no node has {what} for this session right now; try again later")
                node = placement.lock_node(db, (random.choice(nodes[:2]) if attempt else nodes[0]).id)
                if node.state != NodeState.UP or not placement.fits(db, node, demand, share):
                    db.rollback()
                    continue
                gpu = gpus.lease_gpu(db, node, desktop.id, share) if desktop.gpu else None
                if desktop.gpu and gpu is None:
                    db.rollback()
                    continue
                desktop.node_id = node.id
                desktop.gpu_uuid = gpu["uuid"] if gpu else ""
                desktop.cpus = min(desktop.cpus, node.cpus)  # a CPU limit above the node's CPUs is no limit
                desktop.cpu_guarantee = min(desktop.cpu_guarantee, desktop.cpus)
                desktop.state = SessionState.STARTING
                db.commit()
                return node
            except (IntegrityError, OperationalError):
                db.rollback()
                time.sleep(random.uniform(0.005, 0.03))
        self._end(db, desktop, SessionState.FAILED, "could not reserve a place: too many launches at once")
        raise NoCapacity("could not reserve a place: too many launches at once; try again")

    def _name(self, desktop: DesktopSession) -> str:
        """The container (or service) name of a session."""
        return f"asci-{self.settings.broker_instance}-s{desktop.id}"

    def _ids(self, user: User) -> tuple[int, int]:
        """The uid and gid a user's desktops run as."""
        base = self.settings.session_uid_base
        uid = user.uid if user.uid is not None else base + user.id
        gid = user.gid if user.gid is not None else (user.uid if user.uid is not None else base + user.id)
        return uid, gid

    def _spec(self, desktop: DesktopSession, user: User, exp: Experiment, folder: rundir.SessionDir, uid: int,
              gid: int) -> LaunchSpec:
        labels = {containers.MANAGED: "1", containers.LABEL_INSTANCE: self.settings.broker_instance,
                  containers.LABEL_SESSION: str(desktop.id), "asci.user": user.username,
                  "asci.experiment": exp.code, "asci.environment": desktop.environment,
                  "asci.version": desktop.version}
        return desktop_spec(self.settings, session_id=desktop.id, name=self._name(desktop),
                            image=desktop.image, folder=folder, uid=uid, gid=gid, user_name=user.username,
                            home_volume=f"asci-home-{user.username}", home_path=f"/home/{user.username}",
                            cpus=desktop.cpus, memory_bytes=desktop.memory_bytes,
                            cpu_guarantee=desktop.cpu_guarantee, memory_guarantee_bytes=desktop.memory_guarantee_bytes,
                            data_path=exp.data_path, gpu_uuid=desktop.gpu_uuid, labels=labels)

    def await_desktop(self, ref: NodeRef, state: dict, folder: rundir.SessionDir, uid: int, timeout: float) -> None:
        """Return once the desktop's own VNC server serves its socket (locked and proved, ``rundir.ready``).

        Raises :class:`ForeignServer` when something else answers there, :class:`BackendError` with the
        reason and the desktop's last log lines when it exits or does not answer within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.ready(folder, uid, lambda: self.backend.container_id(ref, state)):
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
    def _stop_backend(self, ref: NodeRef, desktop: DesktopSession) -> None:
        if not desktop.backend_state:
            return  # never started: nothing of it runs (reconciliation removes anything left)
        try:
            self.backend.stop(ref, desktop.backend_state)
        except BackendError as exc:
            logs.event("session.stop_failed", session=desktop.id, error=str(exc))

    def _end(self, db: Session, desktop: DesktopSession, state: str, message: str) -> None:
        desktop.state, desktop.message, desktop.stopped_at = state, message, utcnow()
        release(db, desktop)
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
                self._end(db, desktop, SessionState.LOST, f"{reason}; node unreachable ({exc}), its container is removed "
                                             "when the node answers again")
                return desktop
        self._end(db, desktop, SessionState.STOPPED, reason)
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
            release(db, desktop)
        db.commit()
        logs.event("node.down", node=node.name, reason=reason, lost_sessions=[s.id for s in lost])

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


def release(db: Session, desktop: DesktopSession) -> None:
    """What an ended session held: its GPU slot and its folder (socket and password file) on the node."""
    gpus.release(db, desktop.id)
    if desktop.vnc_socket:
        rundir.remove_for_socket(desktop.vnc_socket)


# ------------------------------------------------------------ module facade
_BROKERS: dict[Settings, Broker] = {}
_LOCK = threading.Lock()


def broker_for(settings: Settings) -> Broker:
    """The process's broker for ``settings`` (created on first use)."""
    with _LOCK:
        if settings not in _BROKERS:
            _BROKERS[settings] = Broker(settings)
        return _BROKERS[settings]


def install(settings: Settings, broker: Broker | None) -> None:
    """Use ``broker`` for ``settings`` (tests, other backends); None forgets it."""
    with _LOCK:
        if broker is None:
            _BROKERS.pop(settings, None)
        else:
            _BROKERS[settings] = broker


def launch(settings: Settings, db: Session, user: User, environment: str, version: str = "current",
           experiment: str = "", **options) -> DesktopSession:
    """Start a session (see :meth:`Broker.launch`)."""
    return broker_for(settings).launch(db, user, environment, version, experiment, **options)


def stop(settings: Settings, db: Session, session_id: int, user: User) -> DesktopSession:
    """Stop one of the user's sessions (administrators: any)."""
    return broker_for(settings).stop(db, session_id, user)


def vnc_target(settings: Settings, session_id: int, user: User) -> VncTarget:
    """The socket and passwords for the websockify token plugin and the viewer; NotFound for anyone else's."""
    return broker_for(settings).vnc_target(session_id, user)


def touch(settings: Settings, session_id: int) -> bool:
    """A VNC client is connected to ``session_id`` (websockify's plugin); False when it is not running."""
    return broker_for(settings).touch(session_id)
