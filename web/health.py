"""``/healthz``: whether the platform answers.

Anyone gets ``{"status": "ok"}`` (200) or ``{"status": "failing"}`` (503), decided by one database
query and nothing else: an anonymous caller makes no Docker or registry call and learns no host,
version or error. Administrators and tokens with the ``metrics`` scope also get the checks: the
database revision, each Docker daemon with its version, the registry.
"""

from __future__ import annotations

from flask import jsonify

from asci.accounts import SCOPE_METRICS
from asci.db import current_revision, ping, session_scope
from asci.errors import AsciError
from asci.http import CSRF_API, blueprint, current_settings, known_args
from asci.services import docker_status, registry_status
from asci.webauth import optional_caller

bp = blueprint("health", __name__, csrf=CSRF_API)


def _may_see_details(settings) -> bool:
    try:
        with session_scope(settings) as db:
            who = optional_caller(db)
            return who is not None and (who.is_admin or (who.token is not None and who.token.allows(SCOPE_METRICS)))
    except AsciError as exc:
        if exc.http_status == 401:
            raise
        return False  # the database does not answer: nobody can be recognised, the summary says failing


@bp.get("/healthz")
def healthz():
    """200 when the database answers, 503 (with Retry-After) when it does not; details for monitoring."""
    settings = current_settings()
    known_args()
    database: dict = {"ok": True}
    try:
        ping(settings)
        database["revision"] = current_revision(settings)
    except AsciError as exc:
        database = {"ok": False, "error": str(exc)}
    status = "ok" if database["ok"] else "failing"
    headers = {} if database["ok"] else {"Retry-After": "30"}
    code = 200 if database["ok"] else 503
    if not database["ok"] or not _may_see_details(settings):
        return jsonify(status=status), code, headers
    checks = {"database": database, "docker": docker_status(settings), "registry": registry_status(settings)}
    return jsonify(status=status, checks=checks), code, headers
