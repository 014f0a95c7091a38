"""``/api/builds``: build jobs as JSON (administrators), and queueing a build.

GET  /api/builds?state=&environment=&limit=   newest first
GET  /api/builds/<id>                         one job, with its log
POST /api/builds {"environment": ..., "reason": ...}   queue a build (201)

Authentication (administrators only; a token needs the ``admin`` scope) comes before the body is
read; errors follow ``asci.http``.
"""

from __future__ import annotations

import re

from flask import jsonify, request

import builder
from asci.db import session_scope
from asci.errors import BadRequest
from asci.http import CSRF_API, blueprint, current_settings, json_object, known_args
from asci.webauth import require_user
from ci import queue
from ci.errors import JobNotFound
from ci.models import STATES

bp = blueprint("ci_api", __name__, csrf=CSRF_API, url_prefix="/api/builds")
ENVIRONMENT_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
MAX_ID = 2**63 - 1


@bp.get("")
def list_builds():
    with session_scope(current_settings()) as db:
        require_user(db, admin=True)
        known_args("state", "environment", "limit")
        state = request.args.get("state")
        if state is not None and state not in STATES:
            raise BadRequest(f"state must be one of {', '.join(STATES)}")
        environment = request.args.get("environment")
        if environment is not None and not ENVIRONMENT_NAME.fullmatch(environment):
            raise BadRequest(f"environment: expected an environment name, got {environment[:40]!r}")
        raw_limit = request.args.get("limit", "50")
        if not (raw_limit.isascii() and raw_limit.isdigit() and 1 <= int(raw_limit) <= 500):
            raise BadRequest(f"limit: expected an integer from 1 to 500, got {raw_limit[:20]!r}")
        limit = int(raw_limit)
        jobs = queue.list_jobs(db, state=state, environment=environment, limit=limit)
        return jsonify(builds=[job.as_dict() for job in jobs])


@bp.get("/<int:job_id>")
def show_build(job_id: int):
    with session_scope(current_settings()) as db:
        require_user(db, admin=True)
        known_args()
        if job_id > MAX_ID:
            raise JobNotFound(f"no build job {job_id}")
        job = queue.get_job(db, job_id)
        return jsonify(job.as_dict() | {"log": job.log})


@bp.post("")
def enqueue_build():
    settings = current_settings()
    with session_scope(settings) as db:
        user = require_user(db, admin=True)
        known_args()
        body = json_object('{"environment": NAME, "reason": TEXT}')
        unknown = sorted(set(body) - {"environment", "reason"})
        if unknown or not isinstance(body.get("environment"), str) or not isinstance(body.get("reason", ""), str):
            raise BadRequest('expected JSON {"environment": NAME, "reason": TEXT}' +
                             (f"; unknown field(s): {', '.join(unknown)}" if unknown else ""))
        if len(body.get("reason", "")) > 500:
            raise BadRequest("reason: at most 500 characters")
        try:
            builder.load_recipe(settings.recipes_dir, body["environment"])
        except builder.RecipeError as exc:
            raise JobNotFound(str(exc)) from None
        reason = str(body.get("reason") or f"requested by {user.username} through the API")[:500]
        job = queue.enqueue(db, body["environment"], reason, debounce_s=0, max_attempts=settings.ci_max_attempts)
        db.flush()
        return jsonify(job.as_dict()), 201
