"""Home (my experiments and their environments), launching, and my sessions."""

from __future__ import annotations

import datetime as dt

from flask import flash, g, redirect, render_template, request, url_for

import broker
import builder
from asci.db import session_scope
from asci.errors import AsciError
from asci.http import blueprint, current_settings
from web import broker_link
from web.security import login_required, safe_next, user_row

bp = blueprint("pages", __name__)


def _parse_day(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _environment_card(db, experiment: broker.ExperimentView, env: builder.EnvironmentSummary,
                      picked_day: dt.date | None) -> dict:
    on_day = builder.current_on(db, env.name, picked_day) if picked_day else None
    return {"id": env.id, "name": env.name, "description": env.description, "current": env.current_version,
            "history": builder.version_history(db, env.name), "day": picked_day, "on_day": on_day,
            "selected": on_day or env.current_version, "default_day": experiment.starts_on}


@bp.get("/")
@login_required
def home():
    """The user's experiments, each with its environments, versions and a launch form."""
    picked_env = request.args.get("env", type=int)
    picked_exp = request.args.get("exp", type=int)
    picked_day = _parse_day(request.args.get("on"))
    if request.args.get("on") and picked_day is None:
        flash("Choose a date as YYYY-MM-DD.", "warning")
    cards = []
    with session_scope(current_settings()) as db:
        user = user_row(db)
        for experiment in broker.experiments_of(db, g.user.id):
            environments = [
                _environment_card(db, experiment, env,
                                  picked_day if (env.id, experiment.id) == (picked_env, picked_exp) else None)
                for env in builder.environment_summaries(db, experiment.environment_ids)]
            cards.append({"id": experiment.id, "code": experiment.code, "title": experiment.title,
                          "starts_on": experiment.starts_on, "ends_on": experiment.ends_on,
                          "data_path": experiment.data_path, "environments": environments})
        active = [broker.session_dict(row) for row in broker.list_sessions(db, user, include_ended=False)]
        shared = [view.as_dict() for view in broker.shares.shared_with(db, user)]
    return render_template("pages/home.html", experiments=cards, active=active, shared=shared)


@bp.post("/launch")
@login_required
def launch():
    """Ask the broker for a desktop and open it at once (the viewer shows the progress until it runs)."""
    environment = request.form.get("environment", "")
    version = request.form.get("version") or "current"
    experiment = request.form.get("experiment", "")
    try:
        session_id = broker_link.launch(current_settings(), broker.current_broker(), g.user.id,
                                        broker.LaunchRequest(environment, version, experiment))
    except AsciError as exc:
        flash(f"Could not start {environment} {version}: {exc}", "danger")
        return redirect(url_for("pages.home"))
    return redirect(url_for("viewer.desktop", session_id=session_id))


PAGE_SIZE = 50


def after_cursor() -> int | None:
    """The ``after`` query argument of a paginated list (None for the first page or a bad value)."""
    raw = request.args.get("after", "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None


@bp.get("/sessions")
@login_required
def my_sessions():
    """The user's sessions, newest first, a page at a time: open or stop the running ones."""
    with session_scope(current_settings()) as db:
        page = broker.session_page(db, user_row(db), limit=PAGE_SIZE, after=after_cursor())
        rows = page.sessions
    return render_template("pages/sessions.html", sessions=rows, everyone=False, next_after=page.next,
                           first_page=after_cursor() is None)


@bp.post("/sessions/<int:session_id>/stop")
@login_required
def stop(session_id: int):
    """Stop a session (its owner, or an administrator); anyone else's is 404."""
    settings = current_settings()
    try:
        with session_scope(settings) as db:
            broker.current_broker().stop(db, session_id, user_row(db))
        flash(f"Session {session_id} is stopping.", "info")
    except broker.NotFound:
        raise
    except AsciError as exc:
        flash(f"Could not stop session {session_id}: {exc}", "danger")
    back = request.form.get("back", "")
    return redirect(back if back and safe_next(back) == back else url_for("pages.my_sessions"))
