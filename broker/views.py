"""What the broker shows: sessions (the one JSON shape), nodes with their usage, a user's experiments.

Every page, API route and command uses these, so a session or a node reads the same everywhere.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from asci.accounts import User
from broker import placement
from broker.errors import NotFound
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


def list_sessions(db: Session, user: User, everyone: bool = False, include_ended: bool = True,
                  limit: int = 1000) -> list[DesktopSession]:
    """The user's sessions, newest first (all users' when an administrator asks for ``everyone``)."""
    statement = (select(DesktopSession).order_by(DesktopSession.id.desc()).limit(limit)
                 .options(selectinload(DesktopSession.user), selectinload(DesktopSession.experiment),
                          selectinload(DesktopSession.node)))
    if not (everyone and user.is_admin):
        statement = statement.where(DesktopSession.user_id == user.id)
    if not include_ended:
        statement = statement.where(DesktopSession.state.in_(ACTIVE_STATES))
    return list(db.scalars(statement))


def versions_in_use(db: Session) -> set[tuple[str, str]]:
    """``(environment, version)`` of every session on record, ended or not (registry gc keeps them)."""
    return set(db.execute(select(DesktopSession.environment, DesktopSession.version).distinct()).all())


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
    return {"name": node.name, "docker_url": node.docker_url, "vnc_host": node.vnc_host, "state": node.state,
            "cpus": node.cpus, "memory_bytes": node.memory_bytes, "max_sessions": node.max_sessions,
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
