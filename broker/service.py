"""The broker core: launch, stop, look up and touch sessions; what web/ and the API call.

Public functions (each takes the settings; ``db`` is a SQLAlchemy session the
caller opened, e.g. with ``asci.db.session_scope`` — the service commits it at
the points where other launches must see its leases):

- ``launch(settings, db, user, environment, version="current", experiment=..., gpu=False, cpus=None,
  memory=None) -> DesktopSession`` — validate, place, start, wait until VNC answers.
- ``stop(settings, db, session_id, user) -> DesktopSession``
- ``get_session(db, session_id, user)``, ``list_sessions(db, user, everyone=False)``
- ``vnc_target(settings, session_id, user) -> (host, port, password)`` — for the websockify token
  plugin; raises NotFound for sessions that are not the user's (admins: any) or not running.
- ``touch(settings, session_id)`` — a VNC client is connected: resets the idle clock.
- ``session_dict(session)`` — the JSON shape the API returns (no password).

The core owns time-outs, readiness checks and user-facing messages; backends
(``broker.backends``) only talk to the engine. A test or the web app can put a
``Broker`` with another backend in place with ``install(settings, broker)``.
"""

from __future__ import annotations

import math
import random
import re
import secrets
import socket
import string
import threading
import time

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from asci import db as asci_db
from asci.accounts import User
from asci.config import Settings
from broker import containers, logs, metrics, placement, ports
from broker.backends.base import Backend, LaunchSpec, NodeRef
from broker.errors import BackendError, BadRequest, Forbidden, NoCapacity, NodeUnreachable, NotFound, QuotaExceeded
from broker.experiments_import import data_path_problem
from broker.gpus import lease_gpu
from broker.models import (ACTIVE_STATES, FAILED, FINAL_STATES, LOST, NODE_DOWN, PENDING, RUNNING, STARTING,
                           STOPPED, STOPPING, DesktopSession, Experiment, ExperimentEnvironment, ExperimentMember,
                           Node)
from builder.models import SUCCEEDED, Environment, EnvironmentVersion

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def make_backend(settings: Settings) -> Backend:
    """The backend named by ``settings.broker_backend``."""
    if settings.broker_backend == "swarm":
        from broker.backends.swarm import SwarmBackend

        return SwarmBackend(settings.docker_hosts[0])
    from broker.backends.docker import DockerBackend

    return DockerBackend()


def vnc_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when an RFB server greets us on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            return sock.recv(12).startswith(b"RFB ")
    except OSError:
        return False


def parse_memory(value) -> int:
    """Bytes from an integer or a string such as ``4g``, ``512MiB``, ``2048m``."""
    if isinstance(value, bool):
        raise BadRequest(f"memory: expected bytes or a size such as 4g, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise BadRequest(f"memory: expected bytes or a size such as 4g, got {value!r}")
        return int(value)
    match = _MEMORY.match(str(value))
    if not match:
        raise BadRequest(f"memory: expected bytes or a size such as 4g, got {value!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def resources(settings: Settings, cpus=None, memory=None) -> tuple[float, int]:
    """Checked (cpus, memory bytes), defaults filled in; absurd values are a BadRequest."""
    if cpus is None:
        cpus = settings.session_default_cpus
    if isinstance(cpus, bool) or not isinstance(cpus, (int, float, str)):
        raise BadRequest(f"cpus: expected a number, got {cpus!r}")
    try:
        cpus = float(cpus)
    except ValueError:
        raise BadRequest(f"cpus: expected a number, got {cpus!r}") from None
    if not 0.1 <= cpus <= settings.session_max_cpus:
        raise BadRequest(f"cpus: expected between 0.1 and {settings.session_max_cpus:g}, got {cpus:g}")
    memory_bytes = parse_memory(memory) if memory is not None else settings.session_default_memory_mb << 20
    if not 256 << 20 <= memory_bytes <= settings.session_max_memory_mb << 20:
        raise BadRequest(f"memory: expected between 256 MiB and {settings.session_max_memory_mb} MiB, "
                         f"got {memory_bytes >> 20} MiB")
    return cpus, memory_bytes


def visible(user: User, session: DesktopSession | None) -> bool:
    """A user sees their own sessions; administrators see all."""
    return session is not None and (user.is_admin or session.user_id == user.id)


def get_session(db: Session, session_id: int, user: User) -> DesktopSession:
    """The session ``session_id`` if ``user`` may see it, else NotFound (no hint that it exists)."""
    session = db.get(DesktopSession, session_id)
    if not visible(user, session):
        raise NotFound(f"no session {session_id}")
    return session


def list_sessions(db: Session, user: User, everyone: bool = False, include_ended: bool = True,
                  limit: int = 1000) -> list[DesktopSession]:
    """The user's sessions, newest first (all users' when an administrator asks for ``everyone``)."""
    statement = select(DesktopSession).order_by(DesktopSession.id.desc()).limit(limit)
    if not (everyone and user.is_admin):
        statement = statement.where(DesktopSession.user_id == user.id)
    if not include_ended:
        statement = statement.where(DesktopSession.state.in_(ACTIVE_STATES))
    return list(db.scalars(statement))


def session_dict(session: DesktopSession) -> dict:
    """The API's JSON shape of a session (never the VNC password)."""
    version = session.environment_version
    iso = lambda value: value.isoformat() if value else None  # noqa: E731
    return {
        "id": session.id,
        "state": session.state,
        "message": session.message,
        "user": session.user.username,
        "experiment": session.experiment.code,
        "environment": version.environment.name if version else None,
        "version": version.version if version else None,
        "image": session.image,
        "image_digest": session.image_digest,
        "node": session.node.name if session.node else None,
        "vnc_port": session.vnc_port,
        "display": session.display,
        "cpus": session.cpus,
        "memory_bytes": session.memory_bytes,
        "gpu": session.gpu,
        "gpu_uuid": session.gpu_uuid or None,
        "created_at": iso(session.created_at),
        "started_at": iso(session.started_at),
        "stopped_at": iso(session.stopped_at),
        "last_activity": iso(session.last_activity),
    }


def resolve(db: Session, user: User, environment: str, version: str, experiment: str
            ) -> tuple[EnvironmentVersion, Experiment]:
    """The launchable version and the experiment, after the authorisation checks."""
    for name, value in (("environment", environment), ("version", version), ("experiment", experiment)):
        if not isinstance(value, str) or not value.strip():
            raise BadRequest(f"{name}: expected a non-empty string, got {value!r}")
    env = db.scalar(select(Environment).where(Environment.name == environment))
    if env is None:
        raise NotFound(f"unknown environment {environment!r}")
    wanted = env.current_version if version == "current" else version
    if wanted is None:
        raise NotFound(f"environment {environment!r} has no current version yet")
    row = db.scalar(select(EnvironmentVersion).where(EnvironmentVersion.environment_id == env.id,
                                                     EnvironmentVersion.version == wanted))
    if row is None:
        raise NotFound(f"environment {environment!r} has no version {wanted!r}")
    if row.status != SUCCEEDED or not row.image_digest:
        raise BadRequest(f"version {wanted} of {environment!r} cannot be launched (build {row.status})")
    exp = db.scalar(select(Experiment).where(Experiment.code == experiment))
    member = exp is not None and db.scalar(select(ExperimentMember.id).where(
        ExperimentMember.experiment_id == exp.id, ExperimentMember.user_id == user.id)) is not None
    if exp is None or not (member or user.is_admin):
        raise Forbidden(f"you are not a member of experiment {experiment!r}")
    allowed = db.scalar(select(ExperimentEnvironment.id).where(ExperimentEnvironment.experiment_id == exp.id,
                                                               ExperimentEnvironment.environment_id == env.id))
    if allowed is None:
        raise Forbidden(f"experiment {experiment!r} may not use environment {environment!r}")
    problem = data_path_problem(exp.data_path) if exp.data_path else None
    if problem:  # rows written before the import checked paths, or edited by hand: never mount them
        raise Forbidden(f"experiment {experiment!r}: its data folder {exp.data_path!r} {problem}; "
                        "ask an administrator to correct it")
    return row, exp


def _password() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))  # VNC authentication uses 8 characters


def _retryable(exc: Exception) -> bool:
    return isinstance(exc, (IntegrityError, OperationalError))


class Broker:
    """Launches and stops sessions with one backend; owns timeouts and messages."""

    def __init__(self, settings: Settings, backend: Backend | None = None, ready=None) -> None:
        self.settings = settings
        self.backend = backend or make_backend(settings)
        self.ready = ready or vnc_answers  # (host, port) -> bool
        logs.configure(settings.log_format)

    # ---------------------------------------------------------------- launch
    def launch(self, db: Session, user: User, environment: str, version: str = "current", experiment: str = "",
               gpu: bool = False, cpus=None, memory=None, on_created=None) -> DesktopSession:
        """Start a session and wait until its VNC server answers; raises a BrokerError with the reason.

        ``on_created(session_id)`` is called once the session's row is committed, before placement
        and start, so a caller can show progress for exactly this session.
        """
        began = time.monotonic()
        if not isinstance(gpu, bool):
            raise BadRequest(f"gpu: expected true or false, got {gpu!r}")
        env_version, exp = resolve(db, user, environment, version, experiment)
        cpus, memory_bytes = resources(self.settings, cpus, memory)
        session = self._create_row(db, user, env_version, exp, gpu, cpus, memory_bytes)
        if on_created is not None:
            on_created(session.id)
        logs.event("session.requested", session=session.id, user=user.username, environment=environment,
                   version=env_version.version, experiment=exp.code, gpu=gpu)
        excluded: set[int] = set()
        while True:
            node = self._place(db, session, excluded)
            spec = self._spec(session, user, env_version, exp, node)
            ref = NodeRef.of(node)
            try:
                self.backend.ensure_image(ref, session.image)
                state = self.backend.start(ref, spec)
            except NodeUnreachable as exc:
                ports.release(db, session.id)
                session.state, session.node_id, session.vnc_port, session.display = PENDING, None, None, None
                db.commit()
                self.node_down(db, node.id, str(exc))
                excluded.add(node.id)
                continue
            except BackendError as exc:
                self._end(db, session, FAILED, f"the desktop could not be started: {exc}")
                raise
            break
        session.backend_state = self.backend.get_state(state)
        session.container_id = state.get("container_id") or state.get("service_id", "")
        session.container_name = spec.name
        db.commit()
        self._wait_ready(db, session, node, ref)
        metrics.LAUNCH_SECONDS.observe(time.monotonic() - began)
        logs.event("session.running", session=session.id, node=node.name, port=session.vnc_port,
                   seconds=round(time.monotonic() - began, 3))
        return session

    def _create_row(self, db, user, env_version, exp, gpu, cpus, memory_bytes) -> DesktopSession:
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
                session = DesktopSession(user_id=user.id, experiment_id=exp.id, environment_version_id=env_version.id,
                                         image=env_version.pull_reference, image_digest=env_version.image_digest,
                                         vnc_password=_password(), state=PENDING, cpus=cpus, memory_bytes=memory_bytes,
                                         gpu=gpu, backend_state={})
                db.add(session)
                db.commit()
                return session
            except OperationalError:
                db.rollback()
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
        raise BackendError("the database is too busy; try again")

    def _place(self, db: Session, session: DesktopSession, excluded: set[int]) -> Node:
        """Pick a node and lease a port (and GPU slot) for ``session``; commits."""
        share = self.settings.gpu_share_count
        for attempt in range(40):
            try:
                nodes = placement.candidates(db, session.cpus, session.memory_bytes, session.gpu, share, excluded)
                if not nodes:
                    db.rollback()
                    what = "a free GPU" if session.gpu else "free capacity"
                    self._end(db, session, FAILED, f"no node has {what} for this session right now")
                    raise NoCapacity(f"no node has {what} for this session right now; try again later")
                node = placement.lock_node(db, (random.choice(nodes[:2]) if attempt else nodes[0]).id)
                if node.state != "up" or not placement.fits(db, node, session.cpus, session.memory_bytes,
                                                            session.gpu, share):
                    db.rollback()
                    continue
                port = ports.lease_port(db, node, session.id)
                gpu = lease_gpu(db, node, session.id, share) if session.gpu else None
                if port is None or (session.gpu and gpu is None):
                    db.rollback()
                    continue
                session.node_id, session.vnc_port = node.id, port
                session.display = ports.display_for(node, port)
                session.gpu_uuid = gpu["uuid"] if gpu else ""
                session.state = STARTING
                db.commit()
                return node
            except (IntegrityError, OperationalError):
                db.rollback()
                time.sleep(random.uniform(0.005, 0.03))
        self._end(db, session, FAILED, "could not reserve a port: too many launches at once")
        raise NoCapacity("could not reserve a port: too many launches at once; try again")

    def _spec(self, session: DesktopSession, user: User, env_version: EnvironmentVersion, exp: Experiment,
              node: Node) -> LaunchSpec:
        base = self.settings.session_uid_base
        uid = user.uid if user.uid is not None else base + user.id
        gid = user.gid if user.gid is not None else (user.uid if user.uid is not None else base + user.id)
        labels = {containers.MANAGED: "1", containers.LABEL_INSTANCE: self.settings.broker_instance,
                  containers.LABEL_SESSION: str(session.id), "asci.user": user.username,
                  "asci.experiment": exp.code, "asci.environment": env_version.environment.name,
                  "asci.version": env_version.version, "asci.port": str(session.vnc_port)}
        return LaunchSpec(
            session_id=session.id, name=f"asci-{self.settings.broker_instance}-s{session.id}", image=session.image,
            port=session.vnc_port, display=session.display, password=session.vnc_password, uid=uid, gid=gid,
            user_name=user.username, home_volume=f"asci-home-{user.username}", home_path=f"/home/{user.username}",
            data_path=exp.data_path, data_read_only=self.settings.session_data_read_only, cpus=session.cpus,
            memory_bytes=session.memory_bytes, pids_limit=self.settings.session_pids_limit,
            gpu_uuid=session.gpu_uuid, labels=labels)

    def _wait_ready(self, db: Session, session: DesktopSession, node: Node, ref: NodeRef) -> None:
        deadline = time.monotonic() + self.settings.session_start_timeout_s
        while True:
            if self.ready(node.vnc_host, session.vnc_port):
                break
            try:
                gone = self.backend.poll(ref, session.backend_state)
            except BackendError:
                gone = None
            if gone or time.monotonic() > deadline:
                why = f"the desktop {gone}" if gone else (
                    f"the desktop did not answer within {self.settings.session_start_timeout_s} s")
                tail = self.backend.logs(ref, session.backend_state, tail=20).strip().splitlines()[-3:]
                self._stop_backend(ref, session)
                self._end(db, session, FAILED, why + (": " + " | ".join(tail) if tail else ""))
                raise BackendError(f"session {session.id} failed to start: {why}")
            time.sleep(0.05)
        now = asci_db.utcnow()
        session.state, session.started_at, session.last_activity, session.message = RUNNING, now, now, ""
        db.commit()

    # ---------------------------------------------------------------- ending
    def _stop_backend(self, ref: NodeRef, session: DesktopSession) -> None:
        try:
            self.backend.stop(ref, session.backend_state or {"container_name": session.container_name})
        except BackendError as exc:
            logs.event("session.stop_failed", session=session.id, error=str(exc))

    def _end(self, db: Session, session: DesktopSession, state: str, message: str) -> None:
        session.state, session.message, session.stopped_at = state, message, asci_db.utcnow()
        ports.release(db, session.id)
        db.commit()
        logs.event(f"session.{state}", session=session.id, message=message)

    def stop(self, db: Session, session_id: int, user: User, reason: str = "stopped by the user") -> DesktopSession:
        """Stop and remove a session's container; a session already ended is returned as it is."""
        session = get_session(db, session_id, user)
        return self.stop_session(db, session, reason)

    def stop_session(self, db: Session, session: DesktopSession, reason: str) -> DesktopSession:
        """Stop ``session`` without an authorisation check (culling, administrators)."""
        if session.state in FINAL_STATES:
            return session
        session.state = STOPPING
        db.commit()
        if session.node is not None:
            try:
                self.backend.stop(NodeRef.of(session.node), session.backend_state or
                                  {"container_name": session.container_name})
            except NodeUnreachable as exc:
                self._end(db, session, LOST, f"{reason}; node unreachable ({exc}), its container is removed "
                                             "when the node answers again")
                return session
        self._end(db, session, STOPPED, reason)
        return session

    def node_down(self, db: Session, node_id: int, reason: str) -> None:
        """Mark a node down and its active sessions lost."""
        db.rollback()
        node = db.get(Node, node_id)
        node.state, node.last_error = NODE_DOWN, reason
        lost = db.scalars(select(DesktopSession).where(DesktopSession.node_id == node_id,
                                                       DesktopSession.state.in_((STARTING, RUNNING, STOPPING)))).all()
        for session in lost:
            session.state, session.stopped_at = LOST, asci_db.utcnow()
            session.message = f"node {node.name} stopped answering; the session is lost"
            ports.release(db, session.id)
        db.commit()
        logs.event("node.down", node=node.name, reason=reason, lost_sessions=[s.id for s in lost])

    # ---------------------------------------------------------------- lookups
    def vnc_target(self, session_id: int, user: User) -> tuple[str, int, str]:
        """``(host, port, password)`` of a running session the user may open."""
        with asci_db.session_scope(self.settings) as db:
            session = get_session(db, session_id, user)
            if session.state != RUNNING or session.node is None:
                raise NotFound(f"session {session_id} is not running")
            return session.node.vnc_host, session.vnc_port, session.vnc_password

    def touch(self, session_id: int) -> None:
        """Record VNC client activity: the idle clock restarts and any idle warning is withdrawn."""
        with asci_db.session_scope(self.settings) as db:
            session = db.get(DesktopSession, session_id)
            if session is not None and session.state == RUNNING:
                session.last_activity, session.warned_at = asci_db.utcnow(), None
                if session.message.startswith("idle"):
                    session.message = ""


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


def vnc_target(settings: Settings, session_id: int, user: User) -> tuple[str, int, str]:
    """``(host, port, password)`` for the websockify token plugin; NotFound for anyone else's session."""
    return broker_for(settings).vnc_target(session_id, user)


def touch(settings: Settings, session_id: int) -> None:
    """A VNC client is connected to ``session_id`` (called by the websockify plugin / viewer)."""
    broker_for(settings).touch(session_id)
