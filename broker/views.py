"""What the broker shows: sessions (the one JSON shape), nodes with their usage, a user's experiments.

Every page, API route and command uses these, so a session or a node reads the same everywhere.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from sqlalchemy import Integer, bindparam, select
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
# The session's JSON shape, field by field, and where a listed session's fields come from (one query).
FIELDS = ("id", "state", "message", "user", "experiment", "environment", "version", "image", "image_digest", "node",
          "cpus", "memory_bytes", "cpu_guarantee", "memory_guarantee_bytes", "gpu",
          "gpu_uuid", "created_at", "started_at", "stopped_at", "last_activity")
_COLUMNS = {"user": User.username, "experiment": Experiment.code, "node": Node.name}
_LISTED = tuple(_COLUMNS[name] if name in _COLUMNS else getattr(DesktopSession, name) for name in FIELDS)
_WHEN = ("created_at", "started_at", "stopped_at", "last_activity")


@dataclass(frozen=True)
class SessionPage:
    """One page of a session list, newest first, each session in its JSON shape (:func:`session_dict`);
    ``next`` is the ``after`` cursor of the following page (None on the last one)."""

    sessions: list[dict]
    next: int | None


@functools.cache
def _list_statement(of_everyone: bool, include_ended: bool, paged: bool):
    """The list query of one shape, built once: its values are bound parameters (``user_id``, ``limit``,
    ``after``), so a request neither builds a statement nor computes its cache key again (about half the
    query's Python time, see ``bench/bench_session_list_http.py``)."""
    statement = (select(*_LISTED).join(User, User.id == DesktopSession.user_id)
                 .join(Experiment, Experiment.id == DesktopSession.experiment_id)
                 .outerjoin(Node, Node.id == DesktopSession.node_id)
                 .order_by(DesktopSession.id.desc()).limit(bindparam("limit", type_=Integer)))
    if not of_everyone:
        statement = statement.where(DesktopSession.user_id == bindparam("user_id", type_=Integer))
    if not include_ended:
        statement = statement.where(DesktopSession.state.in_(ACTIVE_STATES))
    if paged:
        statement = statement.where(DesktopSession.id < bindparam("after", type_=Integer))
    return statement


def _listed(db: Session, user: User, everyone: bool, include_ended: bool, limit: int, after: int | None):
    of_everyone = bool(everyone and user.is_admin)
    statement = _list_statement(of_everyone, bool(include_ended), after is not None)
    values = {"limit": int(limit)}
    if not of_everyone:
        values["user_id"] = user.id
    if after is not None:
        values["after"] = int(after)
    return db.execute(statement, values).all()


def session_page(db: Session, user: User, everyone: bool = False, include_ended: bool = True, limit: int = 100,
                 after: int | None = None) -> SessionPage:
    """The user's sessions (everyone's for an administrator asking for ``everyone``), newest first.

    Keyset pagination: ``after`` is the id of the last session of the previous page, so a page costs
    the same however deep it is, and sessions started meanwhile never shift it. One query reads the
    columns shown, the user, experiment and node names joined in (no row objects are built: a page of
    1,000 costs a few milliseconds of Python, see ``bench/bench_session_list.py``).
    """
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit: expected between 1 and {MAX_PAGE}, got {limit}")
    rows = _listed(db, user, everyone, include_ended, limit + 1, after)
    more = len(rows) > limit
    sessions = [_shape(row) for row in rows[:limit]]
    return SessionPage(sessions, sessions[-1]["id"] if more else None)


def list_sessions(db: Session, user: User, everyone: bool = False, include_ended: bool = True,
                  limit: int = 100, after: int | None = None) -> list[DesktopSession]:
    """The session rows themselves (for callers that act on them), newest first, user, experiment and
    node loaded in the same query; :func:`session_page` is the list to show."""
    ids = [row.id for row in _listed(db, user, everyone, include_ended, limit, after)]
    statement = (select(DesktopSession).where(DesktopSession.id.in_(ids)).order_by(DesktopSession.id.desc())
                 .options(joinedload(DesktopSession.user, innerjoin=True),
                          joinedload(DesktopSession.experiment, innerjoin=True), joinedload(DesktopSession.node)))
    return list(db.scalars(statement)) if ids else []


def versions_in_use(db: Session) -> set[tuple[str, str]]:
    """``(environment, version)`` of every session on record, ended or not (registry gc keeps them)."""
    return set(db.execute(select(DesktopSession.environment, DesktopSession.version).distinct()).all())


def session_dict(desktop: DesktopSession) -> dict:
    """The JSON shape of a session (never the VNC password): the API, the pages and the CLI show it."""
    names = {"user": desktop.user.username, "experiment": desktop.experiment.code,
             "node": desktop.node.name if desktop.node else None}
    return _shape(tuple(names[name] if name in names else getattr(desktop, name) for name in FIELDS))


def _shape(values) -> dict:
    """The one session shape from the values of :data:`FIELDS`, in order (a row of the list query is one)."""
    shaped = dict(zip(FIELDS, values))
    for name in ("environment", "version", "gpu_uuid"):
        shaped[name] = shaped[name] or None
    for name in _WHEN:
        shaped[name] = _iso(shaped[name])
    return shaped


def node_view(db: Session, node: Node) -> dict:
    """A node with its capacity and what its active sessions use."""
    used = placement.usage(db, node)
    cpus, memory = placement.schedulable(node)
    return {"name": node.name, "docker_url": node.docker_url, "state": node.state,
            "cpus": node.cpus, "memory_bytes": node.memory_bytes, "capacity_source": node.capacity_source,
            "reserve": {"cpus": node.reserve_cpus, "memory_bytes": node.reserve_memory_bytes},
            "overcommit": {"cpus": node.cpu_overcommit, "memory": node.memory_overcommit},
            "schedulable": {"cpus": round(cpus, 3), "memory_bytes": memory}, "max_sessions": node.max_sessions,
            "gpus": node.gpus or [],
            "used": {"sessions": used.sessions, "cpus": used.cpus, "memory_bytes": used.memory_bytes},
            "last_seen": _iso(node.last_seen), "last_error": node.last_error,
            "drained": bool(node.drained), "agent": node.agent or "", "agent_state": node.agent_state or ""}


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
