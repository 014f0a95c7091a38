"""What the broker shows: sessions (the one JSON shape), nodes with their usage, a user's experiments.

Every page, API route and command uses these, so a session or a node reads the same everywhere.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from asci.accounts import User
from broker import placement
from broker.errors import BadRequest, NotFound
from broker.models import (ACTIVE_STATES, DesktopSession, Experiment, ExperimentEnvironment, ExperimentMember,
                           Node)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def visible(user: User, desktop: DesktopSession | None) -> bool:
    """A user sees their own sessions; administrators see all."""
    return desktop is not None and (user.is_admin or desktop.user_id == user.id)


def get_session(db: Session, session_id: int, user: User) -> DesktopSession:
    """The session ``session_id`` if ``user`` may see it, else NotFound (no hint that it exists)."""
    desktop = db.get(DesktopSession, session_id)
    if not visible(user, desktop):
        raise NotFound(f"no session {session_id}")
    return desktop


MAX_PAGE = 1000


@dataclass(frozen=True)
class SessionPage:
    """One page of a session list, newest first; ``next`` is the ``after`` cursor of the following page."""

    sessions: list[DesktopSession]
    next: int | None


def session_page(db: Session, user: User, everyone: bool = False, include_ended: bool = True, limit: int = 100,
                 after: int | None = None) -> SessionPage:
    """The user's sessions (everyone's for an administrator asking for ``everyone``), newest first.

    Keyset pagination: ``after`` is the id of the last session of the previous page, so a page costs
    the same however deep it is, and sessions started meanwhile never shift it. User, experiment and
    node come in the same query (one round trip however many rows).
    """
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit: expected between 1 and {MAX_PAGE}, got {limit}")
    statement = (select(DesktopSession).order_by(DesktopSession.id.desc()).limit(limit + 1)
                 .options(joinedload(DesktopSession.user, innerjoin=True),
                          joinedload(DesktopSession.experiment, innerjoin=True), joinedload(DesktopSession.node)))
    if not (everyone and user.is_admin):
        statement = statement.where(DesktopSession.user_id == user.id)
    if not include_ended:
        statement = statement.where(DesktopSession.state.in_(ACTIVE_STATES))
    if after is not None:
        statement = statement.where(DesktopSession.id < after)
    rows = list(db.scalars(statement))
    more = len(rows) > limit
    rows = rows[:limit]
    return SessionPage(rows, rows[-1].id if more else None)


def list_sessions(db: Session, user: User, everyone: bool = False, include_ended: bool = True,
                  limit: int = 100, after: int | None = None) -> list[DesktopSession]:
    """The sessions of :func:`session_page`, without the cursor."""
    return session_page(db, user, everyone, include_ended, limit, after).sessions


def session_dict(desktop: DesktopSession) -> dict:
    """The JSON shape of a session (never the VNC password): the API, the pages and the CLI show it."""
    return {
        "id": desktop.id,
        "state": desktop.state,
        "message": desktop.message,
        "user": desktop.user.username,
        "experiment": desktop.experiment.code,
        "environment": desktop.environment or None,
        "version": desktop.version or None,
        "image": desktop.image,
        "image_digest": desktop.image_digest,
        "node": desktop.node.name if desktop.node else None,
        "vnc_port": desktop.vnc_port,
        "display": desktop.display,
        "cpus": desktop.cpus,
        "memory_bytes": desktop.memory_bytes,
        "cpu_guarantee": desktop.cpu_guarantee,
        "memory_guarantee_bytes": desktop.memory_guarantee_bytes,
        "gpu": desktop.gpu,
        "gpu_uuid": desktop.gpu_uuid or None,
        "created_at": _iso(desktop.created_at),
        "started_at": _iso(desktop.started_at),
        "stopped_at": _iso(desktop.stopped_at),
        "last_activity": _iso(desktop.last_activity),
    }


def node_view(db: Session, node: Node) -> dict:
    """A node with its capacity and what its active sessions use."""
    used = placement.usage(db, node)
    cpus, memory = placement.schedulable(node)
    return {"name": node.name, "docker_url": node.docker_url, "vnc_host": node.vnc_host, "state": node.state,
            "cpus": node.cpus, "memory_bytes": node.memory_bytes, "capacity_source": node.capacity_source,
            "reserve": {"cpus": node.reserve_cpus, "memory_bytes": node.reserve_memory_bytes},
            "overcommit": {"cpus": node.cpu_overcommit, "memory": node.memory_overcommit},
            "schedulable": {"cpus": round(cpus, 3), "memory_bytes": memory}, "max_sessions": node.max_sessions,
            "ports": [node.port_min, node.port_max], "gpus": node.gpus or [],
            "used": {"sessions": used.sessions, "cpus": used.cpus, "memory_bytes": used.memory_bytes},
            "last_seen": _iso(node.last_seen), "last_error": node.last_error}


def node_views(db: Session) -> list[dict]:
    """Every node, by name."""
    return [node_view(db, node) for node in db.scalars(select(Node).order_by(Node.name))]


@dataclass(frozen=True)
class ExperimentView:
    """An experiment with its members and the ids of the environments it may use."""

    id: int
    code: str
    title: str
    data_path: str
    starts_on: dt.date | None
    ends_on: dt.date | None
    members: tuple[str, ...]
    environment_ids: tuple[int, ...]


def _view(db: Session, experiment: Experiment) -> ExperimentView:
    members = db.scalars(select(User.username).join(ExperimentMember, ExperimentMember.user_id == User.id)
                         .where(ExperimentMember.experiment_id == experiment.id).order_by(User.username))
    environments = db.scalars(select(ExperimentEnvironment.environment_id)
                              .where(ExperimentEnvironment.experiment_id == experiment.id))
    return ExperimentView(experiment.id, experiment.code, experiment.title, experiment.data_path,
                          experiment.starts_on, experiment.ends_on, tuple(members), tuple(environments))


def experiments_of(db: Session, user_id: int) -> list[ExperimentView]:
    """The experiments ``user_id`` is a member of, newest first."""
    rows = db.scalars(select(Experiment).join(ExperimentMember, ExperimentMember.experiment_id == Experiment.id)
                      .where(ExperimentMember.user_id == user_id)
                      .order_by(Experiment.starts_on.desc(), Experiment.code))
    return [_view(db, row) for row in rows]


def all_experiments(db: Session) -> list[ExperimentView]:
    """Every experiment, by code (administrators)."""
    return [_view(db, row) for row in db.scalars(select(Experiment).order_by(Experiment.code))]
