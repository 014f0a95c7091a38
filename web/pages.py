"""Home (my experiments and their environments), launching, and my sessions.

``bp`` is what ``create_app`` registers; it also carries the other page blueprints.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for

from asci import db
from asci.errors import AsciError
from web import broker_link, history
from web.security import login_required, safe_next

bp = Blueprint("pages", __name__)


def _settings():
    from web import settings_of

    return settings_of(current_app)


def _parse_day(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None


@bp.get("/")
@login_required
def home():
    """The user's experiments, each with its environments, versions and a launch form."""
    picked_env = request.args.get("env", type=int)
    picked_day = _parse_day(request.args.get("on"))
    if request.args.get("on") and picked_day is None:
        flash("Choose a date as YYYY-MM-DD.", "warning")
    cards = []
    with db.session_scope(_settings()) as dbs:
        for view in broker_link.experiments_for(dbs, g.user.id):
            exp = view.experiment
            envs = []
            for env in view.environments:
                rows = history.history(env)
                day = picked_day if picked_env == env.id and (view.experiment.id == request.args.get("exp", type=int)) \
                    else None
                on_day = history.current_on(env, day) if day else None
                envs.append({"id": env.id, "name": env.name, "description": env.description,
                             "current": env.current_version, "history": rows,
                             "day": day, "on_day": on_day, "selected": on_day or env.current_version,
                             "default_day": exp.starts_on})
            cards.append({"id": exp.id, "code": exp.code, "title": exp.title, "starts_on": exp.starts_on,
                          "ends_on": exp.ends_on, "data_path": exp.data_path, "environments": envs})
        active = [_session_dict(row) for row in broker_link.sessions_of(dbs, g.user.id, active_only=True)]
    return render_template("pages/home.html", experiments=cards, active=active)


@bp.post("/launch")
@login_required
def launch():
    """Ask the broker for a desktop, then show its progress."""
    environment = request.form.get("environment", "")
    version = request.form.get("version") or "current"
    experiment = request.form.get("experiment", "")
    settings = _settings()
    try:
        session_id = broker_link.launch(settings, g.user.id, environment, version, experiment)
    except AsciError as exc:
        flash(f"Could not start {environment} {version}: {exc}", "danger")
        return redirect(url_for("pages.home"))
    return redirect(url_for("viewer.progress", session_id=session_id))


def _session_dict(row) -> dict:
    version = row.environment_version
    return {"id": row.id, "state": row.state, "message": row.message, "user": row.user.username,
            "experiment": row.experiment.code if row.experiment else "",
            "environment": version.environment.name if version else "?", "version": version.version if version else "?",
            "node": row.node.name if row.node else "", "created_at": row.created_at, "started_at": row.started_at,
            "stopped_at": row.stopped_at, "vnc_port": row.vnc_port, "user_id": row.user_id}


@bp.get("/sessions")
@login_required
def my_sessions():
    """The user's sessions, newest first: open or stop the running ones."""
    with db.session_scope(_settings()) as dbs:
        rows = [_session_dict(row) for row in broker_link.sessions_of(dbs, g.user.id)]
    return render_template("pages/sessions.html", sessions=rows, everyone=False)


@bp.post("/sessions/<int:session_id>/stop")
@login_required
def stop(session_id: int):
    """Stop a session (its owner, or an administrator)."""
    settings = _settings()
    with db.session_scope(settings) as dbs:
        row = broker_link.session_row(dbs, session_id)
        if row is None or (row.user_id != g.user.id and not g.user.is_admin):
            abort(404)
    try:
        broker_link.stop(settings, session_id, g.user.id)
        flash(f"Session {session_id} is stopping.", "info")
    except AsciError as exc:
        flash(f"Could not stop session {session_id}: {exc}", "danger")
    back = request.form.get("back", "")
    return redirect(back if back and safe_next(back) == back else url_for("pages.my_sessions"))


def _html_error(error, message: str):
    if request.path.startswith(("/api/", "/repos/", "/healthz", "/metrics", "/static/")):
        return error  # JSON and file endpoints keep their own error bodies
    return render_template("error.html", code=error.code, message=message), error.code


@bp.app_errorhandler(403)
def forbidden(error):
    return _html_error(error, "You are not allowed to see this page.")


@bp.app_errorhandler(404)
def not_found(error):
    return _html_error(error, "There is nothing here.")
