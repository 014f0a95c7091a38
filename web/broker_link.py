"""Everything the web pages need from the broker, in one place.

Reads use the broker's models directly; actions (launch, stop, VNC target)
call ``broker.service``. The login contract is ``flask.session["user_id"]``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from asci.accounts import User
from asci.config import Settings
from asci.db import session_scope
from asci.errors import AsciError
from builder.models import Environment
from web import WebError

log = logging.getLogger(__name__)


@dataclass
class ExperimentView:
    experiment: object  # broker.models.Experiment
    environments: list[Environment]


def experiments_for(dbs: Session, user_id: int) -> list[ExperimentView]:
    """The experiments ``user_id`` is a member of, each with the environments it may use."""
    from broker.models import Experiment, ExperimentEnvironment, ExperimentMember

    experiments = dbs.scalars(
        select(Experiment).join(ExperimentMember, ExperimentMember.experiment_id == Experiment.id)
        .where(ExperimentMember.user_id == user_id)
        .order_by(Experiment.starts_on.desc(), Experiment.code)).all()
    views = []
    for experiment in experiments:
        environments = dbs.scalars(
            select(Environment).join(ExperimentEnvironment, ExperimentEnvironment.environment_id == Environment.id)
            .where(ExperimentEnvironment.experiment_id == experiment.id).order_by(Environment.name)).all()
        views.append(ExperimentView(experiment, list(environments)))
    return views


def sessions_of(dbs: Session, user_id: int | None, active_only: bool = False, limit: int = 200) -> list:
    """A user's sessions (all users' when ``user_id`` is None), newest first."""
    from broker.models import ACTIVE_STATES, DesktopSession

    query = select(DesktopSession).order_by(DesktopSession.id.desc()).limit(limit)
    if user_id is not None:
        query = query.where(DesktopSession.user_id == user_id)
    if active_only:
        query = query.where(DesktopSession.state.in_(ACTIVE_STATES))
    return list(dbs.scalars(query))


def session_row(dbs: Session, session_id: int):
    from broker.models import DesktopSession

    return dbs.get(DesktopSession, session_id)


def launch(settings: Settings, user_id: int, environment: str, version: str, experiment: str,
           wait_s: float = 10.0) -> int:
    """Start a session in the background; returns its id as soon as the broker has created its row.

    ``broker.service.launch`` returns only once the desktop answers, so it runs in a thread and
    reports the new session's id through ``on_created``; the caller is sent to that session's
    progress page. Errors raised before the row exists (unknown environment, not a member,
    quota...) propagate here with their message.
    """
    outcome: dict = {}
    created, done = threading.Event(), threading.Event()

    def on_created(session_id: int) -> None:
        outcome["id"] = session_id
        created.set()

    def run() -> None:
        from broker import service

        try:
            with session_scope(settings) as dbs:
                user = dbs.get(User, user_id)
                service.launch(settings, dbs, user, environment, version, experiment, on_created=on_created)
        except BaseException as exc:  # reported to the request while it waits, else logged
            outcome["error"] = exc
            log.warning("launch of %s %s for user %s failed: %s", environment, version, user_id, exc)
        finally:
            done.set()

    threading.Thread(target=run, name=f"launch-{user_id}", daemon=True).start()
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if created.wait(0.05):
            return int(outcome["id"])
        if done.is_set():  # refused before its row existed: unknown environment, not a member, quota...
            raise outcome["error"]
    raise WebError("the broker did not register the session in time; see My sessions")


def stop(settings: Settings, session_id: int, user_id: int) -> None:
    """Ask the broker to stop a session (owner or administrator)."""
    from broker import service

    with session_scope(settings) as dbs:
        service.stop(settings, dbs, session_id, dbs.get(User, user_id))


def vnc_target(settings: Settings, session_id: int, user: User) -> tuple[str, int, str] | None:
    """``(host, port, password)`` of a running session owned by ``user`` (owners only), or None."""
    from broker import service
    from broker.models import DesktopSession

    with session_scope(settings) as dbs:
        row = dbs.get(DesktopSession, session_id)
        if row is None or row.user_id != user.id:
            return None
    try:
        return service.vnc_target(settings, session_id, user)
    except AsciError:  # not found, not running
        return None


def touch(settings: Settings, session_id: int) -> None:
    """Tell the broker a VNC client connected (restarts the idle clock)."""
    from broker import service

    try:
        service.touch(settings, session_id)
    except AsciError as exc:
        log.warning("touch of session %s failed: %s", session_id, exc)
