"""``/healthz``: whether the platform's services answer."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from asci import db
from asci.errors import AsciError
from asci.services import docker_status, registry_status

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 when the database answers; Docker and registry reachability are reported alongside."""
    from web import settings_of

    settings = settings_of(current_app)
    checks: dict[str, dict] = {}
    try:
        db.ping(settings)
        checks["database"] = {"ok": True, "revision": db.current_revision(settings)}
    except AsciError as exc:
        checks["database"] = {"ok": False, "error": str(exc)}
    checks["docker"] = docker_status(settings)
    checks["registry"] = registry_status(settings)
    healthy = checks["database"]["ok"]
    return jsonify(status="ok" if healthy else "failing", checks=checks), (200 if healthy else 503)
