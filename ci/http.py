"""``/api/builds``: build jobs as JSON (administrators), and queueing a build.

GET  /api/builds?state=&environment=&limit=   newest first
GET  /api/builds/<id>                         one job, with its log
POST /api/builds {"environment": ..., "reason": ...}   queue a build (201)
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from asci.db import session_scope
from asci.webauth import request_user
from builder.errors import RecipeError
from builder.recipes import load_recipe
from ci import queue
from ci.errors import JobNotFound
from ci.models import STATES

bp = Blueprint("ci_api", __name__, url_prefix="/api/builds")


def _settings():
    from web import settings_of

    return settings_of(current_app)


def _admin_or_error(session):
    user = request_user(session)
    if user is None:
        return None, (jsonify(error="log in or send an API token (Authorization: Bearer <token>)"), 401)
    if not user.is_admin:
        return None, (jsonify(error="build jobs are visible to administrators only"), 403)
    return user, None


@bp.get("")
def list_builds():
    state = request.args.get("state") or None
    if state is not None and state not in STATES:
        return jsonify(error=f"state must be one of {', '.join(STATES)}"), 400
    try:
        limit = min(max(int(request.args.get("limit", 50)), 1), 500)
    except ValueError:
        return jsonify(error="limit must be an integer"), 400
    with session_scope(_settings()) as session:
        _, error = _admin_or_error(session)
        if error:
            return error
        jobs = queue.list_jobs(session, state=state, environment=request.args.get("environment") or None, limit=limit)
        return jsonify(builds=[job.as_dict() for job in jobs])


@bp.get("/<int:job_id>")
def show_build(job_id: int):
    with session_scope(_settings()) as session:
        _, error = _admin_or_error(session)
        if error:
            return error
        try:
            job = queue.get_job(session, job_id)
        except JobNotFound as exc:
            return jsonify(error=str(exc)), exc.http_status
        return jsonify(job.as_dict() | {"log": job.log})


@bp.post("")
def enqueue_build():
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("environment"), str):
        return jsonify(error='expected JSON {"environment": NAME, "reason": TEXT}'), 400
    settings = _settings()
    with session_scope(settings) as session:
        user, error = _admin_or_error(session)
        if error:
            return error
        try:
            load_recipe(settings.recipes_dir, body["environment"])
        except RecipeError as exc:
            return jsonify(error=str(exc)), 404
        reason = str(body.get("reason") or f"requested by {user.username} through the API")[:500]
        job = queue.enqueue(session, body["environment"], reason, debounce_s=0,
                            max_attempts=settings.ci_max_attempts)
        session.flush()
        return jsonify(job.as_dict()), 201
