"""The launch of a desktop session, as a state machine of committed steps.

::

    step      the session's state    committed on success                  on failure
    reserve   (no row yet)           pending: the row, within the quota    refused (BadRequest, Unsatisfiable,
                                                                           QuotaExceeded...): no row is left
    place     pending                starting: a node (and a GPU slot)     failed (NoCapacity)
    prepare   starting               its folder on the node (vnc_socket)   failed; node unreachable: the node is
                                                                           marked down, pending again, place again
    start     starting               the container (backend_state)         as prepare
    await     starting               running: its own VNC server answers   failed, its container stopped

:data:`STEPS` is that table; :func:`finish` runs its steps after ``reserve`` and handles every
failure the same way (the session ends in the step's failure state, with its message). ``reserve``
runs in the caller's request (a refusal reaches the caller with its message and leaves nothing);
the rest can run there too (:meth:`broker.Broker.launch`) or on the broker's launch runner
(:meth:`broker.Broker.launch_in_background`), which reloads the session by id.

What happens on the node itself, the session folder (``prepare``) and the proof that the desktop's
own VNC server answers (``await``), goes through the node's :class:`broker.node_side.NodeSide`.
"""

from __future__ import annotations

import random
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

import builder
from asci.accounts import User
from asci.config import Settings
from asci.db import utcnow
from broker import containers, gpus, logs, placement, rundir
from broker.access import resolve
from broker.backends.base import LaunchSpec, NodeRef
from broker.errors import BackendError, BadRequest, BrokerError, ForeignServer, NoCapacity, NodeUnreachable, \
    QuotaExceeded, Unsatisfiable
from broker.models import ACTIVE_STATES, DesktopSession, Experiment, Node, NodeState, SessionState
from broker.resources import resources

if TYPE_CHECKING:
    from broker.service import Broker


@dataclass(frozen=True)
class LaunchRequest:
    """What a user asks for: an environment's version in an experiment, and the session's resources.

    ``cpus`` and ``memory`` are the limits, ``cpu_guarantee`` and ``memory_guarantee`` the guarantees
    (None: the environment's recipe, then the settings; checked by ``broker.resources``)."""

    environment: str
    version: str = "current"
    experiment: str = ""
    gpu: bool = False
    cpus: object = None
    memory: object = None
    cpu_guarantee: object = None
    memory_guarantee: object = None


@dataclass
class Launch:
    """One launch under way: its session row and what the steps so far found out."""

    desktop: DesktopSession
    user: User
    experiment: Experiment
    uid: int
    gid: int
    began: float  # time.monotonic() when it was asked for
    node: Node | None = None
    ref: NodeRef | None = None
    folder: rundir.SessionDir | None = None
    excluded: set[int] = field(default_factory=set)  # nodes found unreachable during this launch


class Retry(NamedTuple):
    """How often a step tries again after a database conflict, and how long it pauses before try ``n``."""

    tries: int
    pause: Callable[[int], float]


RESERVE_RETRY = Retry(20, lambda attempt: random.uniform(0.01, 0.05) * (attempt + 1))
PLACE_RETRY = Retry(40, lambda attempt: random.uniform(0.005, 0.03))
AGAIN = object()  # what an attempt returns to be tried again at once (it rolled back itself)


def retried(db: Session, policy: Retry, attempt: Callable[[int], object]):
    """``attempt(n)`` until it returns something other than :data:`AGAIN`; a database conflict
    (``IntegrityError``, ``OperationalError``) rolls back and pauses first. None when the tries run out."""
    for n in range(policy.tries):
        try:
            outcome = attempt(n)
        except (IntegrityError, OperationalError):
            db.rollback()
            time.sleep(policy.pause(n))
            continue
        if outcome is not AGAIN:
            return outcome
    return None


class NoPlace(Exception):
    """``place`` found no node: ``message`` stays on the session, the caller gets NoCapacity with ``hint``."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


def new_password() -> str:
    """A random VNC password (VNC authentication uses 8 characters)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def recipe_defaults(settings: Settings, environment: str) -> builder.ResourceDefaults | None:
    """The session defaults in ``environment``'s recipe (None when it has no readable recipe here)."""
    try:
        return builder.load_recipe(settings.recipes_dir, environment).resources
    except builder.RecipeError as exc:
        if "unknown environment" not in str(exc):
            logs.event("recipe.unreadable", environment=environment, error=str(exc))
        return None


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


def session_ids(settings: Settings, user: User) -> tuple[int, int]:
    """The uid and gid a user's desktops run as."""
    base = settings.session_uid_base
    uid = user.uid if user.uid is not None else base + user.id
    gid = user.gid if user.gid is not None else (user.uid if user.uid is not None else base + user.id)
    return uid, gid


def container_name(settings: Settings, desktop: DesktopSession) -> str:
    """The container (or service) name of a session."""
    return f"asci-{settings.broker_instance}-s{desktop.id}"


def session_spec(settings: Settings, launch: Launch) -> LaunchSpec:
    """The launch parameters of the session's desktop (``desktop_spec`` with the session's labels)."""
    desktop, user, exp = launch.desktop, launch.user, launch.experiment
    labels = {containers.MANAGED: "1", containers.LABEL_INSTANCE: settings.broker_instance,
              containers.LABEL_SESSION: str(desktop.id), "asci.user": user.username,
              "asci.experiment": exp.code, "asci.environment": desktop.environment,
              "asci.version": desktop.version}
    return desktop_spec(settings, session_id=desktop.id, name=container_name(settings, desktop),
                        image=desktop.image, folder=launch.folder, uid=launch.uid, gid=launch.gid,
                        user_name=user.username, home_volume=f"asci-home-{user.username}",
                        home_path=f"/home/{user.username}", cpus=desktop.cpus, memory_bytes=desktop.memory_bytes,
                        cpu_guarantee=desktop.cpu_guarantee, memory_guarantee_bytes=desktop.memory_guarantee_bytes,
                        data_path=exp.data_path, gpu_uuid=desktop.gpu_uuid, labels=labels)


# ------------------------------------------------------------------ the steps

def reserve(broker: Broker, db: Session, user: User, request: LaunchRequest) -> Launch:
    """Check the request and commit the session's row (pending); refusals leave no row."""
    began = time.monotonic()
    settings = broker.settings
    if not isinstance(request.gpu, bool):
        raise BadRequest(f"gpu: expected true or false, got {request.gpu!r}")
    launchable, exp = resolve(settings, db, user, request.environment, request.version, request.experiment)
    wanted = resources(settings, request.cpus, request.memory, request.cpu_guarantee, request.memory_guarantee,
                       defaults=recipe_defaults(settings, launchable.environment))
    why = placement.refusal(db, placement.Demand(wanted.cpu_guarantee, wanted.memory_guarantee_bytes, request.gpu))
    if why:
        db.rollback()
        raise Unsatisfiable(why)

    def attempt(_: int) -> DesktopSession:
        locked = select(User).where(User.id == user.id)
        if db.get_bind().dialect.name == "postgresql":
            locked = locked.with_for_update()
        db.execute(locked)
        active = db.scalar(select(func.count(DesktopSession.id)).where(
            DesktopSession.user_id == user.id, DesktopSession.state.in_(ACTIVE_STATES))) or 0
        if active >= settings.session_max_per_user:
            db.rollback()
            raise QuotaExceeded(f"you already have {active} active sessions "
                                f"(at most {settings.session_max_per_user}); stop one first")
        desktop = DesktopSession(user_id=user.id, experiment_id=exp.id, environment_version_id=launchable.id,
                                 environment=launchable.environment, version=launchable.version,
                                 image=launchable.image, image_digest=launchable.image_digest,
                                 vnc_password=new_password(), vnc_view_password=new_password(),
                                 state=SessionState.PENDING, cpus=wanted.cpu_limit,
                                 memory_bytes=wanted.memory_limit_bytes, cpu_guarantee=wanted.cpu_guarantee,
                                 memory_guarantee_bytes=wanted.memory_guarantee_bytes, gpu=request.gpu,
                                 backend_state={})
        db.add(desktop)
        db.commit()
        return desktop

    desktop = retried(db, RESERVE_RETRY, attempt)
    if desktop is None:
        raise BackendError("the database is too busy; try again")
    logs.event("session.requested", session=desktop.id, user=user.username, environment=request.environment,
               version=launchable.version, experiment=exp.code, gpu=request.gpu, cpu_guarantee=wanted.cpu_guarantee,
               memory_guarantee=wanted.memory_guarantee_bytes)
    uid, gid = session_ids(broker.settings, user)
    return Launch(desktop, user, exp, uid, gid, began)


def place(broker: Broker, db: Session, launch: Launch) -> None:
    """Pick a node (and lease a GPU slot) for the session and commit it: starting."""
    desktop, settings = launch.desktop, broker.settings
    share, policy = settings.gpu_share_count, settings.placement_policy
    demand = placement.Demand(desktop.cpu_guarantee, desktop.memory_guarantee_bytes, desktop.gpu)

    def attempt(n: int):
        nodes = placement.candidates(db, demand, share, policy, launch.excluded)
        if not nodes:
            db.rollback()
            what = "a free GPU" if desktop.gpu else "free capacity"
            raise NoPlace(f"no node has {what} for this session right now", "try again later")
        node = placement.lock_node(db, (random.choice(nodes[:2]) if n else nodes[0]).id)
        if node.state != NodeState.UP or not placement.fits(db, node, demand, share):
            db.rollback()
            return AGAIN
        gpu = gpus.lease_gpu(db, node, desktop.id, share) if desktop.gpu else None
        if desktop.gpu and gpu is None:
            db.rollback()
            return AGAIN
        desktop.node_id = node.id
        desktop.gpu_uuid = gpu["uuid"] if gpu else ""
        desktop.cpus = min(desktop.cpus, node.cpus)  # a CPU limit above the node's CPUs is no limit
        desktop.cpu_guarantee = min(desktop.cpu_guarantee, desktop.cpus)
        desktop.state = SessionState.STARTING
        db.commit()
        return node

    node = retried(db, PLACE_RETRY, attempt)
    if node is None:
        raise NoPlace("could not reserve a place: too many launches at once", "try again")
    launch.node, launch.ref = node, NodeRef.of(node)


def prepare(broker: Broker, db: Session, launch: Launch) -> None:
    """Make the session's folder on its node (the node side) and commit where its VNC socket will be."""
    desktop, settings = launch.desktop, broker.settings
    side, key = broker.node_side(launch.ref), rundir.session_key(settings.broker_instance, desktop.id)
    launch.folder = side.prepare(launch.ref, key, launch.uid, launch.gid, desktop.vnc_password,
                                 desktop.vnc_view_password, rundir.hostname_for(container_name(settings, desktop)),
                                 data_path=launch.experiment.data_path)
    desktop.vnc_socket = side.socket_of(launch.ref, key, launch.folder)
    db.commit()


def start(broker: Broker, db: Session, launch: Launch) -> None:
    """Have the node's engine start the desktop (pulling its image if needed); commit its backend state."""
    desktop = launch.desktop
    broker.backend.ensure_image(launch.ref, desktop.image)
    spec = broker.node_side(launch.ref).with_home(broker.settings.home_root, session_spec(broker.settings, launch))
    state = broker.backend.start(launch.ref, spec)
    desktop.backend_state = broker.backend.get_state(state)
    db.commit()


def await_running(broker: Broker, db: Session, launch: Launch) -> None:
    """Wait until the desktop's own VNC server answers (the node side proves it), then commit: running."""
    desktop = launch.desktop
    broker.await_desktop(launch.ref, desktop.backend_state, launch.folder, launch.uid,
                         broker.settings.session_start_timeout_s)
    now = utcnow()
    desktop.state, desktop.started_at, desktop.last_activity, desktop.message = SessionState.RUNNING, now, now, ""
    db.commit()


class Step(NamedTuple):
    """One transition of a launch: what it runs, the state it commits, and how a failure of it ends the session."""

    name: str
    run: Callable[[Broker, Session, Launch], None]
    commits: str
    fails: str
    message: Callable[[Launch, Exception], str]  # the session's message after a failure
    error: Callable[[Launch, Exception], BrokerError]  # what the caller gets
    replaces_node: bool = False  # NodeUnreachable: node down, the session pending again, placed anew


def _unchanged(launch: Launch, exc: Exception) -> BrokerError:
    return exc


STEPS: tuple[Step, ...] = (
    Step("place", place, SessionState.STARTING, SessionState.FAILED,
         message=lambda launch, exc: exc.message,
         error=lambda launch, exc: NoCapacity(f"{exc.message}; {exc.hint}")),
    Step("prepare", prepare, SessionState.STARTING, SessionState.FAILED,
         message=lambda launch, exc: f"the desktop could not be started: {exc}", error=_unchanged,
         replaces_node=True),
    Step("start", start, SessionState.STARTING, SessionState.FAILED,
         message=lambda launch, exc: f"the desktop could not be started: {exc}", error=_unchanged,
         replaces_node=True),
    Step("await", await_running, SessionState.RUNNING, SessionState.FAILED,
         message=lambda launch, exc: str(exc),
         error=lambda launch, exc: BackendError(f"session {launch.desktop.id} failed to start: {exc}")),
)
"""The steps after ``reserve``, in order (see the module's table)."""


def finish(broker: Broker, db: Session, launch: Launch) -> DesktopSession:
    """Run the steps after ``reserve`` until the session runs; a failure ends it as its step says and raises."""
    index = 0
    while index < len(STEPS):
        step = STEPS[index]
        try:
            step.run(broker, db, launch)
        except NodeUnreachable as exc:
            if not step.replaces_node:
                _fail(broker, db, launch, step, exc)
            _unplace(broker, db, launch, str(exc))
            index = 0  # place again, elsewhere
            continue
        except (BackendError, NoPlace) as exc:
            _fail(broker, db, launch, step, exc)
        index += 1
    seconds = time.monotonic() - launch.began  # asci_session_start_seconds is read from the rows (broker.metrics)
    logs.event("session.running", session=launch.desktop.id, node=launch.node.name, seconds=round(seconds, 3))
    return launch.desktop


def _fail(broker: Broker, db: Session, launch: Launch, step: Step, exc: Exception):
    """End the session in ``step``'s failure state (stopping whatever of it started) and raise its error."""
    if launch.ref is not None:
        broker.stop_backend(launch.ref, launch.desktop)  # nothing when it never started
    broker.end(db, launch.desktop, step.fails, step.message(launch, exc))
    if isinstance(exc, ForeignServer):
        logs.event("session.foreign_server", session=launch.desktop.id, node=launch.node.name, error=str(exc))
    error = step.error(launch, exc)
    if error is exc:
        raise exc
    raise error from None


def _unplace(broker: Broker, db: Session, launch: Launch, reason: str) -> None:
    """The session's node stopped answering: it is pending again, without the node (marked down) or its GPU."""
    desktop = launch.desktop
    gpus.release(db, desktop.id)
    desktop.state, desktop.node_id, desktop.gpu_uuid = SessionState.PENDING, None, ""
    db.commit()
    broker.node_down(db, launch.node.id, reason)
    launch.excluded.add(launch.node.id)
    launch.node = launch.ref = launch.folder = None


def resume(broker: Broker, db: Session, session_id: int, began: float) -> Launch:
    """The launch of the pending session ``session_id`` (reserved in another database session), to finish here."""
    desktop = db.get(DesktopSession, session_id)
    if desktop is None or desktop.state != SessionState.PENDING:
        raise BackendError(f"session {session_id} is no longer pending")
    user = db.get(User, desktop.user_id)
    uid, gid = session_ids(broker.settings, user)
    return Launch(desktop, user, db.get(Experiment, desktop.experiment_id), uid, gid, began)
